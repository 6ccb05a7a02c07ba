package daemon

import (
	"context"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// health is what Healthy and the watchdog read of the loop, from any
// goroutine: when it last iterated, and how the latest read of the mount
// table went.
type health struct {
	heartbeat  time.Duration // the loop wakes at least this often
	startGrace time.Duration
	started    time.Time

	lastBeat   atomic.Int64 // unix nanoseconds of the last loop iteration
	iterations atomic.Uint64
	// readErr is the error of the latest read of the mount table, nil when
	// it succeeded; tableOK is set once a read succeeded and cleared by a
	// failed one.
	readErr atomic.Pointer[string]
	tableOK atomic.Bool
}

func (h *health) start(cfg Config) {
	h.started, h.startGrace = time.Now(), cfg.StartGrace
	// The loop wakes at least this often, so health and the watchdog see
	// it alive; an idle wake-up does nothing else.
	h.heartbeat = min(cfg.Interval, maxHeartbeat)
	if cfg.Watchdog > 0 {
		h.heartbeat = min(h.heartbeat, cfg.Watchdog/4)
	}
}

// beat records an iteration of the loop.
func (h *health) beat() {
	h.lastBeat.Store(time.Now().UnixNano())
	h.iterations.Add(1)
}

// tableRead records how the latest read of the table went.
func (h *health) tableRead(err error) {
	if err != nil {
		msg := err.Error()
		h.readErr.Store(&msg)
		h.tableOK.Store(false)
		return
	}
	h.readErr.Store(nil)
	h.tableOK.Store(true)
}

// check is Healthy without the lanes: the loop iterates and the table
// can be read.
func (h *health) check(now time.Time) (bool, string) {
	last := time.Unix(0, h.lastBeat.Load())
	if age := now.Sub(last); age > 3*h.heartbeat+time.Second {
		return false, "the loop has not iterated for " + age.Round(time.Millisecond).String()
	}
	if e := h.readErr.Load(); e != nil {
		return false, "the mount table cannot be read: " + *e
	}
	if !h.tableOK.Load() {
		if age := now.Sub(h.started); age > h.startGrace {
			return false, "no read of the mount table has succeeded in " + age.Round(time.Second).String() + " since start"
		}
	}
	return true, "ok"
}

// petWatchdog sends WATCHDOG=1 every Watchdog/2, but only when the loop
// iterated since the last pet and is healthy: a stuck loop is restarted.
func (d *Daemon) petWatchdog(ctx context.Context) {
	t := time.NewTicker(d.cfg.Watchdog / 2)
	defer t.Stop()
	seen := d.health.iterations.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			it := d.health.iterations.Load()
			ok, why := d.Healthy(now)
			if it == seen || !ok {
				d.cfg.Log.Warn("not petting the systemd watchdog: the loop makes no progress", zap.String("reason", why))
				continue
			}
			seen = it
			if err := d.cfg.Notify("WATCHDOG=1"); err != nil {
				d.cfg.Log.Warn("systemd watchdog notify failed", zap.Error(err))
			}
		}
	}
}
