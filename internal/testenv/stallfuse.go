package testenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// StallFUSE is a FUSE server in the test process that behaves like
// ceph-fuse with its MDS frozen: while stalled it answers statfs and the
// root's getattr (and opens the root directory), but takes every lookup and
// directory read and does not answer until Resume (StallAll holds statfs
// and getattr too, as with its monitors down). A task that lists the
// root then waits in the kernel for an answer (request_wait_answer), as a
// pod's ls does in the field, while a statfs/stat probe is answered.
type StallFUSE struct {
	Dir string

	mu      sync.Mutex
	stalled bool
	all     bool // statfs and getattr are held too
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

// StallAll makes the server take every request without answering it,
// statfs and getattr too (a probe of the mount then hangs).
func (s *StallFUSE) StallAll() {
	s.Stall()
	s.mu.Lock()
	s.all = true
	s.mu.Unlock()
}

// Resume answers the held requests and every later one.
func (s *StallFUSE) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled {
		s.stalled, s.all = false, false
		close(s.resume)
	}
}

// Taken returns a channel that receives a value each time the server takes a
// request it holds: the server has read it, so the caller now waits in the
// kernel for the answer.
func (s *StallFUSE) Taken() <-chan struct{} { return s.taken }

// hold blocks a request while the server is stalled (for statfs and
// getattr, only while it stalls everything).
func (s *StallFUSE) hold(ctx context.Context, always bool) {
	s.mu.Lock()
	stalled, resume := s.stalled && (always || s.all), s.resume
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
	n.s.hold(ctx, false)
	out.Blocks, out.Bfree, out.Bavail, out.Bsize, out.NameLen = 1024, 512, 512, 4096, 255
	return 0
}

func (n *stallNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.s.hold(ctx, false)
	out.Mode = syscall.S_IFDIR | 0o755
	out.Nlink = 2
	return 0
}

func (n *stallNode) Opendir(ctx context.Context) syscall.Errno { return 0 }

func (n *stallNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.s.hold(ctx, true)
	return nil, syscall.ENOENT
}

func (n *stallNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	n.s.hold(ctx, true)
	return fs.NewListDirStream(nil), 0
}

func (n *stallNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	n.s.hold(ctx, true)
	return 0, syscall.ENODATA
}

// StuckPodVolume is a CSI pod volume of pod VolumePodUID (namespace team-a,
// name web-0, volume pvc-1) on a StallFUSE, and a stand-in pod (team-a/
// stand-in, cgroupfs driver, burstable) whose ls of the volume the stalled
// server has taken and holds: its task waits in the kernel, with the
// volume's directory open (getdents64).
type StuckPodVolume struct {
	FUSE                  *StallFUSE
	Mnt                   string
	KubeletRoot, PodLogs  string
	VolumePodUID, PodName string
	Pod                   *StandInPod
}

// NewStuckPodVolume makes a StuckPodVolume under dir, with fusectl mounted
// in the test's mount namespace. The server answers statfs and getattr
// (a probe of the mount is answered) unless stallAll. The stand-in runs
// wrap ls (wrap: a command prefix such as setpriv's, or none).
func NewStuckPodVolume(t testing.TB, dir string, stallAll bool, wrap ...string) *StuckPodVolume {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "ls", "coreutils")
	v := &StuckPodVolume{KubeletRoot: filepath.Join(dir, "kubelet"), PodLogs: filepath.Join(dir, "log", "pods"),
		VolumePodUID: NewPodUID(t), PodName: "web-0"}
	v.Mnt = KubeletPodVolume(t, v.KubeletRoot, v.VolumePodUID, "pvc-1", "cephfs.csi.ceph.com", "vol-1")
	if len(wrap) > 0 {
		// The stand-in may run as another user: it must reach the mount
		// point through the test's (0700) directories.
		tmp := filepath.Clean(os.TempDir())
		for d := filepath.Dir(v.Mnt); d != tmp && d != "/" && strings.HasPrefix(d, tmp+"/"); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	v.FUSE = NewStallFUSE(t, v.Mnt, "ceph-fuse", "ceph-fuse")
	var sfs unix.Statfs_t
	if err := unix.Statfs(fusectlDir, &sfs); err != nil || sfs.Type != fusectlMagic {
		Mount(t, "none", fusectlDir, "fusectl", 0, "")
	}
	v.FUSE.Stall()
	argv := append(append([]string{}, wrap...), "ls", v.Mnt)
	v.Pod = StartStandInPod(t, CgroupfsDriver, "burstable", argv[0], argv[1:]...)
	t.Cleanup(v.FUSE.Resume) // first: lets the stand-in exit
	select {
	case <-v.FUSE.Taken():
	case <-time.After(10 * time.Second):
		t.Fatal("the stand-in pod's directory read did not reach the FUSE server")
	}
	for _, d := range []string{"team-a_" + v.PodName + "_" + v.VolumePodUID, "team-a_stand-in_" + v.Pod.UID} {
		if err := os.MkdirAll(filepath.Join(v.PodLogs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if stallAll {
		v.FUSE.StallAll()
	}
	return v
}

const (
	fusectlDir   = "/sys/fs/fuse/connections"
	fusectlMagic = 0x65735543
)
