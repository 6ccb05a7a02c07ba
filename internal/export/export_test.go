package export

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fixedReport is the brief's node with F1, checked at a fixed time.
func fixedReport(t *testing.T) *finding.Report {
	t.Helper()
	s, err := mounts.ReadCapturedTable("../mounts/testdata/k8s-node-brief.mountinfo", mounts.Host{KubeletRoot: mounts.DefaultKubeletRoot})
	if err != nil {
		t.Fatal(err)
	}
	s.Taken = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	rep := (&check.Runner{Checks: []check.Check{check.DeletedRootCheck{}}}).Run(t.Context(), s)
	check.NewTracker().Stamp(s.Taken, rep.Findings)
	for i := range rep.Checks {
		rep.Checks[i].Duration = 1500 * time.Microsecond
	}
	return rep
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/export -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./internal/export -update rewrites it):\n%s", name, got)
	}
}

func TestTextReportGolden(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, fixedReport(t)); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.txt", b.Bytes())
}

func TestJSONReportGolden(t *testing.T) {
	d := NewDocument(fixedReport(t))
	d.Node = "node-1"
	var b bytes.Buffer
	if err := WriteJSON(&b, d); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.json", b.Bytes())
	var back map[string]any
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema_version", "status", "summary", "findings", "checks", "parse_errors", "mount_table"} {
		if _, ok := back[k]; !ok {
			t.Errorf("document lacks %q", k)
		}
	}
}

func TestSummaryFitsEighty(t *testing.T) {
	long := "/var/lib/kubelet/pods/" + strings.Repeat("é", 100) + "/volumes/kubernetes.io~csi/pvc-1/mount"
	rep := &finding.Report{
		Snapshot: &mounts.Snapshot{Mounts: make([]*mounts.Mount, 3)},
		Findings: []finding.Finding{{Check: check.DeletedRoot, Severity: finding.Critical, MountPoint: long}},
	}
	s := Summary(rep)
	if len(s) > SummaryMax || !utf8.ValidString(s) || !strings.HasSuffix(s, "...") {
		t.Errorf("summary %d bytes, valid UTF-8 %v: %q", len(s), utf8.ValidString(s), s)
	}
	if s := ErrorSummary(os.ErrPermission); len(s) > SummaryMax || !strings.HasPrefix(s, "UNKNOWN: ") {
		t.Errorf("error summary %q", s)
	}
}

// Mount points are attacker-chosen names: a newline or a terminal escape in
// one must not forge report lines or drive the operator's terminal.
func TestPrintableEscapesHostileNames(t *testing.T) {
	for in, want := range map[string]string{
		"/plain/ünïcode":       "/plain/ünïcode",
		"/a\nCRITICAL forged":  `/a\x0aCRITICAL forged`,
		"/esc\x1b[2J":          `/esc\x1b[2J`,
		"/back\\slash":         `/back\\slash`,
		"/bad\xffbyte":         `/bad\xffbyte`,
		"/c1\u009bcontrol":     `/c1\x9bcontrol`,
		"/tab\tname (deleted)": `/tab\x09name (deleted)`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
	rep := &finding.Report{
		Snapshot: &mounts.Snapshot{Mounts: make([]*mounts.Mount, 1)},
		Findings: []finding.Finding{{Check: check.DeletedRoot, Severity: finding.Warning, MountPoint: "/x\nOK: forged", Message: "m"}},
	}
	var b bytes.Buffer
	if err := WriteText(&b, rep); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, "OK: forged") {
			t.Errorf("a mount point forged a report line:\n%s", b.String())
		}
	}
}
