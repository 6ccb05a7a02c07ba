package daemon

import (
	"errors"
	"fmt"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/flagname"
)

// watcher reports changes of a mount namespace's table: the kernel marks an
// open mountinfo file POLLPRI|POLLERR after any mount or unmount in that
// namespace (fs/proc_namespace.c mounts_poll).
//
// The kernel remembers the namespace's event counter per open file: it is
// set when the file is opened and updated each time poll reports a change.
// So a change made after open is reported exactly once, whatever was read,
// and the loop can read the table through RereadSnapshot on a separate open:
// it opens the watch first, then reads, and misses nothing. No read of the
// watched file is needed to re-arm it.
//
// Waiting is one poll(2) blocked in the kernel on a dedicated thread: no
// timer, no busy loop. An eventfd wakes it to stop.
type watcher struct {
	fd, efd int
	C       chan struct{} // one pending change, coalesced
	done    chan struct{}
	once    sync.Once
	err     error // why the watch ended early, after done
}

func watch(path string) (*watcher, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s: eventfd: %w", path, err)
	}
	w := &watcher{fd: fd, efd: efd, C: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w, nil
}

func (w *watcher) run() {
	defer close(w.done)
	fds := []unix.PollFd{
		{Fd: int32(w.fd), Events: unix.POLLPRI},
		{Fd: int32(w.efd), Events: unix.POLLIN},
	}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			w.err = fmt.Errorf("poll mountinfo: %w", err)
			return
		}
		if fds[1].Revents != 0 {
			return // stop
		}
		if fds[0].Revents&unix.POLLNVAL != 0 {
			w.err = errors.New("poll mountinfo: descriptor not valid")
			return
		}
		if fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0 {
			select {
			case w.C <- struct{}{}:
			default: // a change is already pending: the next read sees both
			}
		}
	}
}

// Done is closed when the watch ends (stopped, or failed: see Err).
func (w *watcher) Done() <-chan struct{} { return w.done }

// Err is why the watch ended by itself; nil if stopped or running.
func (w *watcher) Err() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}

// Close stops the watch and releases its descriptors.
func (w *watcher) Close() {
	w.once.Do(func() {
		var one = [8]byte{1}
		_, _ = unix.Write(w.efd, one[:])
		<-w.done
		unix.Close(w.fd)
		unix.Close(w.efd)
	})
}

// tableWatch is the loop's watch of the mount table: opened before each
// read, closed when a read fails (the namespace may be gone) and reopened by
// the next; a failure to watch is logged once per distinct error, not per
// interval. Its channels are nil while there is no watch, so the loop's
// select simply does not wait on them. Owned by the loop.
type tableWatch struct {
	path string
	log  *zap.Logger

	w              *watcher
	changed, ended <-chan struct{}
	lastErr        said
}

func (t *tableWatch) open() {
	if t.w != nil {
		return
	}
	w, err := watch(t.path)
	if err != nil {
		if _, changed := t.lastErr.update(err.Error()); changed {
			t.log.Warn("cannot watch the mount table for changes; re-reading every --"+flagname.Interval+" only", zap.Error(err))
		}
		return
	}
	t.lastErr.update("")
	t.w, t.changed, t.ended = w, w.C, w.Done()
}

func (t *tableWatch) close() {
	if t.w != nil {
		t.w.Close()
		t.w, t.changed, t.ended = nil, nil, nil
	}
}

// lost handles a watch that ended on its own.
func (t *tableWatch) lost() {
	t.log.Warn("mount table watch ended; re-reading every --"+flagname.Interval+" until it is re-established", zap.Error(t.w.Err()))
	t.close()
}
