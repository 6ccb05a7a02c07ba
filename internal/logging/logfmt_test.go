package logging

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// parseLogfmt reads one logfmt line: key=value pairs, values bare or
// Go-quoted. It fails the test on anything else.
func parseLogfmt(t *testing.T, line string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for rest := line; rest != ""; {
		k, v, ok := strings.Cut(rest, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \"") {
			t.Fatalf("not logfmt at %q in %q", rest, line)
		}
		if strings.HasPrefix(v, `"`) {
			q, err := strconv.QuotedPrefix(v)
			if err != nil {
				t.Fatalf("bad quoted value %q in %q: %v", v, line, err)
			}
			out[k], _ = strconv.Unquote(q)
			v = v[len(q):]
		} else {
			val, after, _ := strings.Cut(v, " ")
			out[k] = val
			v = " " + after
			if after == "" {
				v = ""
			}
		}
		rest = strings.TrimPrefix(v, " ")
	}
	return out
}

func TestLogfmtFormat(t *testing.T) {
	var buf bytes.Buffer
	core, err := StderrCore(zapcore.InfoLevel, FormatLogfmt, &buf)
	if err != nil {
		t.Fatal(err)
	}
	log := zap.New(core).With(zap.String("component", "loop"))
	hostile := "/var/lib/kubelet/pods/x/volumes/a\nb \"q\"=c\x00d\xff"
	log.Warn("mount problem appeared: stale_mount", zap.String("mount_point", hostile), zap.Int("line", 7),
		zap.Error(errors.New("transport endpoint is not connected")), zap.Duration("timeout", 5*time.Second))
	log.Debug("not shown")
	log.Error("second")

	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines (one per entry, debug filtered), got %d:\n%s", len(lines), buf.String())
	}
	kv := parseLogfmt(t, lines[0])
	for k, want := range map[string]string{
		"level": "warn", "msg": "mount problem appeared: stale_mount", "component": "loop",
		"line": "7", "error": "transport endpoint is not connected", "timeout": "5s",
	} {
		if kv[k] != want {
			t.Errorf("%s=%q, want %q (line %q)", k, kv[k], want, lines[0])
		}
	}
	// slog quotes what needs it: the newline, quotes, NUL and invalid
	// byte come back as they were, and none of them is raw in the line.
	if kv["mount_point"] != hostile {
		t.Errorf("mount_point=%q, want %q", kv["mount_point"], hostile)
	}
	if strings.IndexByte(lines[0], 0) >= 0 || strings.IndexByte(lines[0], 0xff) >= 0 || !utf8.ValidString(lines[0]) {
		t.Errorf("raw control or invalid byte in %q", lines[0])
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z0700", kv["time"]); err != nil {
		t.Errorf("time=%q: %v", kv["time"], err)
	}
	if kv := parseLogfmt(t, lines[1]); kv["level"] != "error" || kv["component"] != "loop" {
		t.Errorf("second line %q", lines[1])
	}
}

func TestLogFormats(t *testing.T) {
	for _, f := range Formats {
		if _, err := StderrCore(zapcore.InfoLevel, f, &bytes.Buffer{}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := StderrCore(zapcore.InfoLevel, "xml", &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--log.format") {
		t.Errorf("xml: %v, want an error naming --log.format", err)
	}
}
