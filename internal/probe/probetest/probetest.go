// Package probetest has what tests of the prober and of the checks that use
// it share: an FS whose probes answer, fail or block as a test says, and
// live snapshots built from mountinfo lines. Only tests import it.
package probetest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// FS answers probes from its maps (a probe.FS). A path listed in Block waits
// until its channel is closed, as a syscall to a stopped FUSE server does.
// Set the maps before probing starts, or hold Mu.
type FS struct {
	Mu    sync.Mutex
	Calls map[string]int
	Errs  map[string]error
	Devs  map[string]uint64
	Block map[string]chan struct{}
}

// NewFS returns an FS where every probe answers with the device of its
// mount (see Table).
func NewFS() *FS {
	return &FS{Calls: map[string]int{}, Errs: map[string]error{}, Devs: map[string]uint64{}, Block: map[string]chan struct{}{}}
}

// Probe implements probe.FS.
func (f *FS) Probe(root, p string) (uint64, error) {
	f.Mu.Lock()
	f.Calls[p]++
	ch, err, dev := f.Block[p], f.Errs[p], f.Devs[p]
	f.Mu.Unlock()
	if ch != nil {
		<-ch
	}
	return dev, err
}

// Count is how many times p was probed.
func (f *FS) Count(p string) int {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return f.Calls[p]
}

// SetErr makes the probes of p fail with err from now on.
func (f *FS) SetErr(p string, err error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Errs[p] = err
}

// Table builds a live snapshot from mountinfo lines, and tells fs the
// device of each mount point.
func Table(t testing.TB, fs *FS, lines ...string) *mounts.Snapshot {
	t.Helper()
	ms, perrs, _, err := mounts.ParseMountTableLimit(strings.NewReader(strings.Join(lines, "\n")), 0)
	if err != nil || len(perrs) > 0 {
		t.Fatal(err, perrs)
	}
	s := mounts.IndexSnapshot(&mounts.Snapshot{Live: true, Mounts: ms, Taken: time.Now()})
	for _, m := range ms {
		if _, ok := fs.Devs[m.Mountpoint]; !ok {
			fs.Devs[m.Mountpoint] = unix.Mkdev(uint32(m.Major), uint32(m.Minor))
		}
	}
	return s
}

// FuseLine is the mountinfo line of a ceph-fuse mount of connection 0:minor.
func FuseLine(id, minor int, root, mp string) string {
	return fmt.Sprintf("%d 1 0:%d %s %s rw - fuse.ceph-fuse ceph-fuse rw", id, minor, root, mp)
}
