// Command fakecephfuse serves a backing directory over FUSE as
// "fuse.ceph-fuse" with source "ceph-fuse", like ceph-fuse does, and breaks
// on cue:
//
//	SIGUSR1  stop answering: every request is read and blocks in its
//	         handler (a ceph-fuse whose monitors are unreachable)
//	SIGHUP   answer statfs and getattr, block every other request in its
//	         handler (a ceph-fuse whose MDS is down: statfs goes to the
//	         monitor, getattr is answered from its caches)
//	SIGUSR2  answer again
//	SIGTERM  die without unmounting (an OOM-killed ceph-fuse: ENOTCONN)
//
// Usage: fakecephfuse BACKING MOUNTPOINT. It prints "ready" once mounted.
// It is a test fixture (the tests build and run it), not a Ceph client and
// not part of what mountwatchd ships.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// mode is what the server answers.
type mode int

const (
	answer  mode = iota // everything
	hung                // nothing: every request blocks in its handler
	mdsDown             // statfs and getattr only
)

// gate blocks requests while the server plays hung. A request that waits
// here has been read from /dev/fuse: the task that made it sleeps in
// request_wait_answer, uninterruptibly once signalled, until it opens.
type gate struct {
	mu   sync.Mutex
	cond *sync.Cond
	mode mode
}

// wait blocks a request other than statfs or getattr while the server is
// hung or its MDS down.
func (g *gate) wait() { g.block(mdsDown) }

// waitMeta blocks statfs and getattr while the server is hung.
func (g *gate) waitMeta() { g.block(hung) }

func (g *gate) block(mode mode) {
	g.mu.Lock()
	for g.mode == hung || g.mode == mode {
		g.cond.Wait()
	}
	g.mu.Unlock()
}

func (g *gate) set(m mode) {
	g.mu.Lock()
	g.mode = m
	g.mu.Unlock()
	g.cond.Broadcast()
}

var theGate = func() *gate { g := &gate{}; g.cond = sync.NewCond(&g.mu); return g }()

// node is a loopback node whose requests pass the gate first.
type node struct{ fs.LoopbackNode }

var (
	_ fs.NodeStatfser    = (*node)(nil)
	_ fs.NodeGetattrer   = (*node)(nil)
	_ fs.NodeStatxer     = (*node)(nil)
	_ fs.NodeLookuper    = (*node)(nil)
	_ fs.NodeWrapChilder = (*node)(nil)
)

func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	if lb, ok := ops.(*fs.LoopbackNode); ok {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: lb.RootData}}
	}
	return ops
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	theGate.waitMeta()
	return n.LoopbackNode.Statfs(ctx, out)
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	theGate.waitMeta()
	return n.LoopbackNode.Getattr(ctx, f, out)
}

func (n *node) Statx(ctx context.Context, f fs.FileHandle, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	theGate.waitMeta()
	return n.LoopbackNode.Statx(ctx, f, flags, mask, out)
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	theGate.wait()
	return n.LoopbackNode.Lookup(ctx, name, out)
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	theGate.wait()
	return n.LoopbackNode.Readdir(ctx)
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	theGate.wait()
	return n.LoopbackNode.Open(ctx, flags)
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	theGate.wait()
	return n.LoopbackNode.OpendirHandle(ctx, flags)
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	theGate.wait()
	return n.LoopbackNode.Getxattr(ctx, attr, dest)
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	theGate.wait()
	return n.LoopbackNode.Listxattr(ctx, dest)
}

func (n *node) Access(ctx context.Context, mask uint32) syscall.Errno {
	theGate.wait()
	return 0
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	theGate.wait()
	return n.LoopbackNode.Rmdir(ctx, name)
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	theGate.wait()
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	theGate.wait()
	return n.LoopbackNode.Create(ctx, name, flags, mode, out)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	theGate.wait()
	return n.LoopbackNode.Unlink(ctx, name)
}

// mountOver mounts a FUSE filesystem on the directory an inherited O_PATH
// descriptor refers to and returns the /dev/fuse descriptor to serve.
func mountOver(target string) (int, error) {
	fd, err := syscall.Open("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return -1, err
	}
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", fd)
	if err := syscall.Mount("ceph-fuse", target, "fuse.ceph-fuse", syscall.MS_NOSUID|syscall.MS_NODEV, data); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: fakecephfuse BACKING MOUNTPOINT")
		os.Exit(2)
	}
	backing, mountpoint := os.Args[1], os.Args[2]
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		fmt.Fprintf(os.Stderr, "fakecephfuse: %v\n", err)
		os.Exit(1)
	}
	root := &fs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev)}
	rootNode := &node{LoopbackNode: fs.LoopbackNode{RootData: root}}
	root.RootNode = rootNode

	target := mountpoint
	if strings.HasPrefix(mountpoint, "/proc/self/fd/") {
		// Mount over a descriptor: go-fuse would stat the mount point
		// first, which fails on a dead FUSE mount. Mount ourselves and hand
		// go-fuse the /dev/fuse descriptor.
		fd, err := mountOver(mountpoint)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fakecephfuse: mount over %s: %v\n", mountpoint, err)
			os.Exit(1)
		}
		target = fmt.Sprintf("/dev/fd/%d", fd)
	}
	server, err := fs.Mount(target, rootNode, &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:      "ceph-fuse",
			Name:        "ceph-fuse",
			DirectMount: target == mountpoint, // a /dev/fd/N target is mounted already
			AllowOther:  true,
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "fakecephfuse: mount %s: %v\n", mountpoint, err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sig {
			switch s {
			case syscall.SIGUSR1:
				theGate.set(hung)
			case syscall.SIGHUP:
				theGate.set(mdsDown)
			case syscall.SIGUSR2:
				theGate.set(answer)
			case syscall.SIGTERM:
				os.Exit(137) // die holding the mount, like the OOM killer's victim
			case syscall.SIGINT:
				theGate.set(answer)
				_ = server.Unmount()
			}
		}
	}()
	fmt.Println("ready")
	server.Wait()
}
