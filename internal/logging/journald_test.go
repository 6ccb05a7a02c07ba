package logging

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

type sent struct {
	msg  string
	prio journal.Priority
	vars map[string]string
}

type fakeJournal struct {
	mu    sync.Mutex
	got   []sent
	err   error
	block chan struct{}
}

func (j *fakeJournal) send(msg string, prio journal.Priority, vars map[string]string) error {
	j.mu.Lock()
	block, err := j.block, j.err
	j.mu.Unlock()
	if block != nil {
		<-block
	}
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.got = append(j.got, sent{msg, prio, vars})
	return nil
}

func newTestLogger(t *testing.T, j *fakeJournal) (*zap.Logger, *JournalCore, *testenv.SyncBuffer) {
	t.Helper()
	var buf testenv.SyncBuffer
	fb, err := StderrCore(zapcore.DebugLevel, "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	jc := NewJournalCore(zapcore.DebugLevel, j.send, fb, "mountwatchd", "priority")
	t.Cleanup(jc.Close)
	return zap.New(jc), jc, &buf
}

func TestJournalFields(t *testing.T) {
	j := &fakeJournal{}
	log, _, _ := newTestLogger(t, j)
	log.With(zap.String("check", "deleted_root")).Warn("mount problem appeared",
		zap.String("mount_point", "/mnt/x"), zap.Int("mount_id", 42), zap.Int("priority", 2),
		zap.String("message_id", "faa7a0350bc2426cb8b19c486849983b"), zap.String("_trusted", "no"), zap.String("priority-ish", "x"))
	_ = log.Sync()
	if len(j.got) != 1 {
		t.Fatalf("sent %d entries", len(j.got))
	}
	e := j.got[0]
	want := map[string]string{"CHECK": "deleted_root", "MOUNT_POINT": "/mnt/x", "MOUNT_ID": "42", "SYSLOG_IDENTIFIER": "mountwatchd",
		"MESSAGE_ID": "faa7a0350bc2426cb8b19c486849983b", "TRUSTED": "no", "PRIORITY_ISH": "x"}
	for k, v := range want {
		if e.vars[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, e.vars[k], v, e.vars)
		}
	}
	if e.prio != journal.PriCrit || e.msg != "mount problem appeared" {
		t.Errorf("priority %d message %q", e.prio, e.msg)
	}
	if _, ok := e.vars["PRIORITY"]; ok {
		t.Error("PRIORITY passed as a var as well")
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{"mount_point": "MOUNT_POINT", "_x": "X", "a.b-c": "A_B_C", "9x": "", "": "", "message": "",
		strings.Repeat("a", 80): strings.Repeat("A", 64)} {
		if got := FieldName(in); got != want {
			t.Errorf("FieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

// When journald goes away the entries land on stderr as JSON, with a
// warning once; when it is back, logging returns to it.
func TestJournalFallback(t *testing.T) {
	j := &fakeJournal{err: errors.New("connect: no such file or directory")}
	log, jc, buf := newTestLogger(t, j)
	for range 3 {
		log.Info("problem cleared", zap.String("check", "deleted_root"))
	}
	_ = log.Sync()
	out := buf.String()
	if strings.Count(out, `"msg":"problem cleared"`) != 3 || strings.Count(out, "journald does not take log entries") != 1 {
		t.Errorf("fallback output:\n%s", out)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &first); err != nil {
		t.Errorf("fallback is not JSON: %v", err)
	}
	if jc.Failures() != 3 {
		t.Errorf("failures %d", jc.Failures())
	}
	j.mu.Lock()
	j.err = nil
	j.mu.Unlock()
	log.Info("back")
	_ = log.Sync()
	if len(j.got) != 1 || !strings.Contains(buf.String(), "logging to journald again") {
		t.Errorf("did not return to journald: sent %d\n%s", len(j.got), buf.String())
	}
}

// A journald that does not answer never blocks the caller: entries beyond
// the queue go to stderr.
func TestJournalHungDoesNotBlock(t *testing.T) {
	j := &fakeJournal{block: make(chan struct{})}
	log, _, buf := newTestLogger(t, j)
	done := make(chan struct{})
	go func() {
		for range 3000 {
			log.Info("x")
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("logging blocked on a hung journald")
	}
	if !strings.Contains(buf.String(), "journal queue full") {
		t.Error("no fallback for a full queue")
	}
	close(j.block)
}
