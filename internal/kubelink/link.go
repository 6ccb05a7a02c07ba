package kubelink

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// HelperName is the helper's file name (FindHelper says where it is
// looked for).
const HelperName = "mountwatchd-kube"

// Restart pauses after the helper exits: doubling from the first to the
// longest, back to the first once it ran for a while.
var (
	firstRestartDelay = time.Second
	maxRestartDelay   = time.Minute
	ranLongEnough     = 5 * time.Minute
)

// LinkConfig is what Start needs besides Config.
type LinkConfig struct {
	// Helper is the path of mountwatchd-kube; empty: FindHelper.
	Helper string
	// LogArgs are the daemon's --log.* flags, passed on so that the
	// helper logs as the daemon does.
	LogArgs []string
	// Stderr receives the helper's log (the daemon's standard error).
	Stderr io.Writer
	Log    *zap.Logger
}

// Link runs mountwatchd-kube and hands it snapshots. Publish never
// blocks: a snapshot the helper has not taken yet is replaced.
type Link struct {
	cfg   Config
	lc    LinkConfig
	path  string
	log   *zap.Logger
	m     *linkMetrics
	relay *relay

	latest  atomic.Pointer[Snapshot]
	pending atomic.Bool   // latest not yet written to the helper
	wake    chan struct{} // 1-buffered

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	stdin io.WriteCloser // of the running helper; nil between runs
}

// FindHelper is mountwatchd-kube beside the running binary (a build, the
// image), in the packages' directory for helper programs next to it
// (../lib/mountwatchd for the .deb, ../libexec/mountwatchd for the RPM),
// else in $PATH.
func FindHelper() (string, error) {
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		for _, p := range []string{
			filepath.Join(dir, HelperName),
			filepath.Join(dir, "..", "lib", "mountwatchd", HelperName),
			filepath.Join(dir, "..", "libexec", "mountwatchd", HelperName),
		} {
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return filepath.Clean(p), nil
			}
		}
	}
	p, err := exec.LookPath(HelperName)
	if err != nil {
		return "", errors.New(HelperName + " is neither beside this binary, nor in ../lib/mountwatchd or ../libexec/mountwatchd, nor in $PATH (the packages and the image install it); give its path with --kube.helper")
	}
	return p, nil
}

// Start validates cfg, finds the helper, registers the link's metrics on
// reg and starts the helper. Publish then hands it snapshots, and Stop
// ends it.
func Start(cfg Config, lc LinkConfig, reg prometheus.Registerer) (*Link, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	path := lc.Helper
	if path == "" {
		var err error
		if path, err = FindHelper(); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(path); err != nil {
		return nil, errors.New("--kube.helper: " + err.Error())
	}
	if lc.Log == nil {
		lc.Log = zap.NewNop()
	}
	if lc.Stderr == nil {
		lc.Stderr = os.Stderr
	}
	l := &Link{cfg: cfg, lc: lc, path: path, log: lc.Log.With(zap.String("component", "kubelink")),
		m: newLinkMetrics(), relay: &relay{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	reg.MustRegister(l.m.collectors()...)
	reg.MustRegister(l.relay)
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go func() { defer close(l.done); l.supervise() }()
	go l.write()
	return l, nil
}

// Publish hands the helper s; it never blocks.
func (l *Link) Publish(s *Snapshot) {
	l.latest.Store(s)
	if l.pending.Swap(true) {
		l.m.snapshots.WithLabelValues("superseded").Inc()
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// write sends the latest snapshot whenever there is a new one and a
// helper to take it; a blocked pipe (a helper that does not read) holds
// only this goroutine.
func (l *Link) write() {
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-l.wake:
		}
		l.mu.Lock()
		w := l.stdin
		l.mu.Unlock()
		if w == nil || !l.pending.Swap(false) {
			continue // sent when the next helper starts
		}
		b, err := encodeMessage(message{Snapshot: l.latest.Load()})
		if err != nil {
			l.log.Error("encode a snapshot for "+HelperName, zap.Error(err))
			continue
		}
		if _, err := w.Write(b); err != nil {
			l.pending.Store(true) // the next helper gets it
			continue
		}
		l.m.snapshots.WithLabelValues("sent").Inc()
	}
}

// supervise runs the helper until Stop, restarting it when it exits.
func (l *Link) supervise() {
	delay := firstRestartDelay
	for {
		began := time.Now()
		err := l.runOnce()
		if l.ctx.Err() != nil {
			return
		}
		if time.Since(began) > ranLongEnough {
			delay = firstRestartDelay
		}
		l.log.Error(HelperName+" exited; restarting it", zap.Error(err), zap.Duration("after", delay))
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, maxRestartDelay)
	}
}

// runOnce starts the helper, relays its metrics and waits for it to exit.
func (l *Link) runOnce() error {
	cmd := exec.Command(l.path, append(l.cfg.Args(), l.lc.LogArgs...)...)
	cmd.Stderr = l.lc.Stderr
	// Its own process group: a terminal's Ctrl-C reaches the daemon,
	// which stops the helper in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	l.m.starts.Inc()
	l.m.up.Set(1)
	l.mu.Lock()
	l.stdin = stdin
	l.mu.Unlock()
	if l.latest.Load() != nil {
		l.pending.Store(true)
	}
	l.kick()

	out := &reading{done: make(chan struct{})}
	go func() { out.err = l.relay.read(bufio.NewReader(stdout)); close(out.done) }()
	select {
	case <-out.done:
		if out.err != nil && !errors.Is(out.err, io.EOF) {
			l.log.Error("reading "+HelperName+"'s metrics; stopping it", zap.Error(out.err))
			_ = cmd.Process.Kill()
		}
	case <-l.ctx.Done():
	}
	l.mu.Lock()
	l.stdin = nil
	l.mu.Unlock()
	if l.ctx.Err() != nil {
		return l.stopHelper(cmd, stdin, out)
	}
	_ = stdin.Close()
	werr := cmd.Wait()
	l.m.up.Set(0)
	l.relay.clear()
	if werr == nil {
		werr = errors.New("exited with status 0 before the daemon stopped")
	}
	return werr
}

// reading is the relay of one helper's output: done is closed when it
// ends, err then says why. Closed, not sent: runOnce and stopHelper may
// both wait for it (the helper exiting as the daemon stops).
type reading struct {
	done chan struct{}
	err  error
}

func (l *Link) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// stopTimeout bounds a clean stop: the helper's last events and, with
// --kube.clear-on-stop, the condition and the taint.
func (l *Link) stopTimeout() time.Duration { return 2*l.cfg.Timeout + time.Second }

// stopHelper tells the helper to stop cleanly and waits for it, killing it
// past stopTimeout.
func (l *Link) stopHelper(cmd *exec.Cmd, stdin io.WriteCloser, out *reading) error {
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		b, _ := encodeMessage(message{Stop: true})
		_, _ = stdin.Write(b)
		_ = stdin.Close()
	}()
	timer := time.NewTimer(l.stopTimeout())
	defer timer.Stop()
	select {
	case <-out.done:
	case <-timer.C:
		l.log.Warn(HelperName+" did not stop in time; killing it", zap.Duration("timeout", l.stopTimeout()))
		_ = cmd.Process.Kill()
		<-out.done // the killed helper's end of its output closes
	}
	if out.err != nil && !errors.Is(out.err, io.EOF) {
		l.log.Debug("reading "+HelperName+"'s metrics as it stopped", zap.Error(out.err))
	}
	err := cmd.Wait()
	l.m.up.Set(0)
	<-sent
	return err
}

// Stop stops the helper: it sends what it still holds and, with
// ClearOnStop, clears the condition and the taint, within a bound.
func (l *Link) Stop() {
	l.cancel()
	<-l.done
}
