package testenv

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
)

// KubeletMountTable is a mountinfo table of n kubelet CSI pod volumes on
// ceph-fuse (50 connections), every tenth bind mount of a deleted directory:
// 20,000 mounts give 2,000 deleted_root problems and over 3 MiB, the size of
// a big node's table.
func KubeletMountTable(n int) string {
	var b strings.Builder
	for i := range n {
		root := "/volumes/csi/vol"
		if i%10 == 0 {
			root += fmt.Sprint(i) + "//deleted"
		}
		fmt.Fprintf(&b, "%d 1 0:%d %s /var/lib/kubelet/pods/%08d-aaaa-bbbb-cccc-dddddddddddd/volumes/kubernetes.io~csi/pvc-%d/mount "+
			"rw,nosuid,nodev,relatime shared:%d - fuse.ceph-fuse ceph-fuse rw,user_id=0,group_id=0,allow_other\n",
			100+i, 39+i%50, root, i, i, i)
	}
	return b.String()
}

// SyncBuffer is a bytes.Buffer safe for one writer goroutine and readers in
// the test (a child's stderr, a logger's output).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreeLoopbackAddr is a free TCP address on 127.0.0.1: every server a test
// starts listens on loopback only.
func FreeLoopbackAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
