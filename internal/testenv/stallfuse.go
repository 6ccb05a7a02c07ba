package testenv

import (
	"context"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// StallFUSE is a FUSE server in the test process that behaves like
// ceph-fuse with its MDS frozen: while stalled it answers statfs and the
// root's getattr (and opens the root directory), but takes every lookup and
// directory read and does not answer until Resume. A task that lists the
// root then waits in the kernel for an answer (request_wait_answer), as a
// pod's ls does in the field, while a statfs/stat probe is answered.
type StallFUSE struct {
	Dir string

	mu      sync.Mutex
	stalled bool
	resume  chan struct{}
	taken   chan struct{} // receives one value per request held
}

// NewStallFUSE mounts a StallFUSE on dir with filesystem type fstype
// (fuse.<subtype>) and source source; it answers everything until Stall.
// The server is resumed and unmounted when the test ends.
func NewStallFUSE(t testing.TB, dir, subtype, source string) *StallFUSE {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &StallFUSE{Dir: dir, resume: make(chan struct{}), taken: make(chan struct{}, 64)}
	root := &stallNode{s: s}
	server, err := fs.Mount(dir, root, &fs.Options{MountOptions: fuse.MountOptions{
		FsName: source, Name: subtype, DirectMount: true, AllowOther: true,
	}})
	if err != nil {
		t.Fatalf("mount a stalling FUSE server on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		s.Resume()
		_ = server.Unmount()
		server.Wait()
	})
	return s
}

// Stall makes the server take lookups and directory reads without
// answering them.
func (s *StallFUSE) Stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stalled {
		s.stalled, s.resume = true, make(chan struct{})
	}
}

// Resume answers the held requests and every later one.
func (s *StallFUSE) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled {
		s.stalled = false
		close(s.resume)
	}
}

// Taken returns a channel that receives a value each time the server takes a
// request it holds: the server has read it, so the caller now waits in the
// kernel for the answer.
func (s *StallFUSE) Taken() <-chan struct{} { return s.taken }

// hold blocks a request while the server is stalled.
func (s *StallFUSE) hold(ctx context.Context) {
	s.mu.Lock()
	stalled, resume := s.stalled, s.resume
	s.mu.Unlock()
	if !stalled {
		return
	}
	select {
	case s.taken <- struct{}{}:
	default:
	}
	<-resume
}

type stallNode struct {
	fs.Inode
	s *StallFUSE
}

var (
	_ fs.NodeStatfser   = (*stallNode)(nil)
	_ fs.NodeGetattrer  = (*stallNode)(nil)
	_ fs.NodeLookuper   = (*stallNode)(nil)
	_ fs.NodeReaddirer  = (*stallNode)(nil)
	_ fs.NodeOpendirer  = (*stallNode)(nil)
	_ fs.NodeGetxattrer = (*stallNode)(nil)
)

func (n *stallNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Blocks, out.Bfree, out.Bavail, out.Bsize, out.NameLen = 1024, 512, 512, 4096, 255
	return 0
}

func (n *stallNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o755
	out.Nlink = 2
	return 0
}

func (n *stallNode) Opendir(ctx context.Context) syscall.Errno { return 0 }

func (n *stallNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.s.hold(ctx)
	return nil, syscall.ENOENT
}

func (n *stallNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	n.s.hold(ctx)
	return fs.NewListDirStream(nil), 0
}

func (n *stallNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	n.s.hold(ctx)
	return 0, syscall.ENODATA
}
