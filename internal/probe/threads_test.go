package probe

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/probe/probetest"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// pipeFS blocks every probe in a real read(2) on a pipe, as a probe of a
// stopped FUSE server blocks in statfs(2): the syscall pins an OS thread
// until a byte arrives.
type pipeFS struct {
	r, w int
	fs   *probetest.FS
}

func (p *pipeFS) Probe(root, path string) (uint64, error) {
	var b [1]byte
	for {
		_, err := unix.Read(p.r, b[:])
		if err != unix.EINTR {
			break
		}
	}
	return p.fs.Probe(root, path)
}

// The threads that hung probes pinned exit once the probes return: a node
// that saw 20 stopped FUSE servers is back to its thread count when they
// answer again, not 20 threads up for ever (issue 8).
func TestProberHungThreadsExit(t *testing.T) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil { // blocking: no netpoller
		t.Fatal(err)
	}
	pfs := &pipeFS{r: fds[0], w: fds[1], fs: probetest.NewFS()}
	released := false
	release := func() {
		if !released {
			released = true
			if _, err := unix.Write(pfs.w, []byte(strings.Repeat("x", 64))); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(func() { release(); unix.Close(fds[0]); unix.Close(fds[1]) })

	const n = 20
	var lines []string
	for i := range n {
		lines = append(lines, probetest.FuseLine(10+i, 40+i, "/", fmt.Sprintf("/mnt/hung%d", i)))
	}
	s := probetest.Table(t, pfs.fs, lines...)
	p := NewProber(Config{Timeout: 200 * time.Millisecond, MaxBlocked: 64}, pfs)
	before := testenv.Threads(t)
	r := p.Round(context.Background(), s)
	if st := p.Stats(); st.Blocked != n || r.Results[10].State != Hung {
		t.Fatalf("%d probes blocked, want %d; %+v", st.Blocked, n, r.Results[10])
	}
	during := testenv.Threads(t)
	if during < before+n/2 {
		t.Fatalf("%d threads with %d probes blocked in read(2), %d before: the probes do not pin threads, the test proves nothing", during, n, before)
	}

	release()
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Blocked > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var after int
	for time.Now().Before(deadline) {
		if after = testenv.Threads(t); after <= before+4 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d threads after the %d hung probes returned (%d before, %d while blocked): their threads did not exit", after, n, before, during)
}
