// Package logging builds the daemon's zap logger: structured entries to the
// systemd journal when running under systemd, JSON (or logfmt) on stderr
// otherwise.
//
// Libraries do not log; only cmd and the daemon loop decide what to log.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/flagname"
)

// Targets of --log.target.
const (
	TargetAuto    = "auto"
	TargetJournal = "journald"
	TargetStderr  = "stderr"
)

// Options configure New.
type Options struct {
	Level  string // debug, info, warn, error
	Format string // json, logfmt or console (stderr only)
	// Target is auto, journald or stderr. auto picks journald when stderr
	// is connected to the journal (JOURNAL_STREAM matches stderr's
	// device and inode, as under a systemd unit), or when the journal socket
	// answers and stderr is not a terminal; stderr otherwise.
	Target string
	// PriorityField is the int field that overrides an entry's journal
	// PRIORITY (see export.PriorityField).
	PriorityField string
	Stderr        io.Writer
	// Send replaces journal.Send (tests).
	Send SendFunc
}

// Logger is a zap logger and the way to close it.
type Logger struct {
	*zap.Logger
	// Journal is true when entries go to journald.
	Journal bool
	close   func()
}

// Close flushes and stops the logger.
func (l *Logger) Close() {
	_ = l.Sync()
	if l.close != nil {
		l.close()
	}
}

// New builds the logger.
func New(o Options) (*Logger, error) {
	level, err := zapcore.ParseLevel(o.Level)
	if err != nil {
		return nil, fmt.Errorf("--"+flagname.LogLevel+": %w", err)
	}
	stderr := o.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	fallback, err := StderrCore(level, o.Format, stderr)
	if err != nil {
		return nil, err
	}
	useJournal := false
	switch o.Target {
	case TargetJournal:
		useJournal = true
	case TargetStderr:
	case TargetAuto, "":
		useJournal = journalAuto()
	default:
		return nil, fmt.Errorf("--"+flagname.LogTarget+": want auto, journald or stderr, not %q", o.Target)
	}
	if !useJournal {
		return &Logger{Logger: zap.New(fallback)}, nil
	}
	// The journal takes structured entries; the fallback must be JSON so
	// the fields stay machine-readable when the journal goes away.
	jsonFallback, _ := StderrCore(level, "json", stderr)
	jc := NewJournalCore(level, o.Send, jsonFallback, "mountwatchd", o.PriorityField)
	return &Logger{Logger: zap.New(jc), Journal: true, close: jc.Close}, nil
}

func journalAuto() bool {
	if ok, err := journal.StderrIsJournalStream(); err == nil && ok {
		return true
	}
	if _, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS); err == nil {
		return false // a person is watching stderr
	}
	return journal.Enabled()
}

// StderrCore is the JSON, logfmt or console core on w.
func StderrCore(level zapcore.LevelEnabler, format string, w io.Writer) (zapcore.Core, error) {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	var encoder zapcore.Encoder
	switch format {
	case FormatJSON, "":
		encoder = zapcore.NewJSONEncoder(enc)
	case FormatLogfmt:
		return newLogfmtCore(level, zapcore.Lock(zapcore.AddSync(w))), nil
	case FormatConsole:
		encoder = zapcore.NewConsoleEncoder(enc)
	default:
		return nil, fmt.Errorf("--"+flagname.LogFormat+"=%q: want json, logfmt or console", format)
	}
	return zapcore.NewCore(encoder, zapcore.Lock(zapcore.AddSync(w)), level), nil
}

// Slog returns a log/slog logger writing through l, for libraries that take
// one (the exporter toolkit's web server).
func Slog(l *zap.Logger) *slog.Logger { return slog.New(&slogHandler{l: l}) }

type slogHandler struct {
	l     *zap.Logger
	group string
}

func (h *slogHandler) Enabled(_ context.Context, level slog.Level) bool {
	return h.l.Core().Enabled(slogLevel(level))
}

func (h *slogHandler) Handle(_ context.Context, r slog.Record) error {
	fields := make([]zap.Field, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, zap.Any(h.group+a.Key, a.Value.Resolve().Any()))
		return true
	})
	if ce := h.l.Check(slogLevel(r.Level), r.Message); ce != nil {
		ce.Write(fields...)
	}
	return nil
}

func (h *slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	fields := make([]zap.Field, 0, len(attrs))
	for _, a := range attrs {
		fields = append(fields, zap.Any(h.group+a.Key, a.Value.Resolve().Any()))
	}
	return &slogHandler{l: h.l.With(fields...), group: h.group}
}

func (h *slogHandler) WithGroup(name string) slog.Handler {
	return &slogHandler{l: h.l, group: h.group + name + "_"}
}

func slogLevel(l slog.Level) zapcore.Level {
	switch {
	case l >= slog.LevelError:
		return zapcore.ErrorLevel
	case l >= slog.LevelWarn:
		return zapcore.WarnLevel
	case l >= slog.LevelInfo:
		return zapcore.InfoLevel
	}
	return zapcore.DebugLevel
}
