package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Ceph is a real Ceph cluster on loopback, one of each daemon (monitor,
// OSD on memstore, MDS), every file in a temporary directory:
// ../shared/TESTING.md's recipe, lean enough to start in seconds.
type Ceph struct {
	t    testing.TB
	Dir  string
	Conf string
	MDS  *exec.Cmd
}

// Ceph runs the ceph command against the cluster and returns its output.
func (c *Ceph) Ceph(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ceph", append([]string{"-c", c.Conf, "--connect-timeout", "30"}, args...)...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("ceph %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// daemon starts a Ceph daemon in the foreground and stops it when the
// test ends (resumed first, in case the test stopped it).
func (c *Ceph) daemon(name string, args ...string) *exec.Cmd {
	c.t.Helper()
	cmd := exec.Command(name, append([]string{"-f", "-c", c.Conf}, args...)...)
	log, err := os.Create(filepath.Join(c.Dir, name+".out"))
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
	})
	return cmd
}

// StartCeph starts a one-machine Ceph cluster with a CephFS and an active
// MDS; it is stopped when the test ends.
func StartCeph(t testing.TB) *Ceph {
	t.Helper()
	RequireRoot(t)
	for _, cmd := range []string{"ceph-mon", "ceph-osd", "ceph-mds"} {
		RequireCommand(t, cmd, cmd)
	}
	RequireCommand(t, "ceph", "ceph-common")
	RequireCommand(t, "monmaptool", "ceph-base")
	dir := t.TempDir()
	c := &Ceph{t: t, Dir: dir, Conf: filepath.Join(dir, "ceph.conf")}
	addr := FreeLoopbackAddr(t)
	fsid := newUUID(t)
	conf := fmt.Sprintf(`[global]
fsid = %s
mon host = %s
auth cluster required = none
auth service required = none
auth client required = none
keyring = /dev/null
osd objectstore = memstore
memstore device bytes = 268435456
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
ms bind ipv6 = false
run dir = %[3]s/run
log file = %[3]s/log/$name.log
admin socket = %[3]s/run/$name.$pid.asok
mon data = %[3]s/$name
osd data = %[3]s/$name
mds data = %[3]s/$name
`, fsid, addr, dir)
	if err := os.WriteFile(c.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"run", "log", "mon.a", "osd.0", "mds.a"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, port, _ := net.SplitHostPort(addr)
	Run(t, "monmaptool", "--create", "--add", "a", "127.0.0.1:"+port, "--fsid", fsid, filepath.Join(dir, "monmap"))
	Run(t, "ceph-mon", "-c", c.Conf, "--mkfs", "-i", "a", "--monmap", filepath.Join(dir, "monmap"))
	c.daemon("ceph-mon", "-i", "a")
	uuid := newUUID(t)
	id := c.Ceph("osd", "create", uuid)
	Run(t, "ceph-osd", "-c", c.Conf, "-i", id, "--mkfs", "--osd-uuid", uuid)
	c.daemon("ceph-osd", "-i", id)
	c.Ceph("osd", "pool", "create", "cephfs_data", "8")
	c.Ceph("osd", "pool", "create", "cephfs_meta", "8")
	c.Ceph("fs", "new", "cephfs", "cephfs_meta", "cephfs_data")
	c.MDS = c.daemon("ceph-mds", "-i", "a")
	WaitUntil(t, time.Minute, "an active MDS", func() bool {
		return strings.Contains(c.Ceph("mds", "stat"), "up:active")
	})
	return c
}

// Mount mounts the cluster's CephFS on dir with a ceph-fuse client of its
// own (ceph-fuse -r root when root is not empty: the subtree ceph-csi
// mounts for a volume) and returns its process. The client is stopped and
// the mount detached when the test ends (the MDS resumed first).
func (c *Ceph) Mount(dir, root string) *exec.Cmd {
	c.t.Helper()
	cephFuse := RequireCommand(c.t, "ceph-fuse", "ceph-fuse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	args := []string{"-f", "-c", c.Conf}
	if root != "" {
		args = append(args, "-r", root)
	}
	cmd := exec.Command(cephFuse, append(args, dir)...)
	log, err := os.Create(filepath.Join(c.Dir, "ceph-fuse-"+filepath.Base(dir)+".out"))
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		_ = c.MDS.Process.Signal(syscall.SIGCONT) // before anything waits on the mount
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
	})
	WaitMounted(c.t, dir)
	return cmd
}

func newUUID(t testing.TB) string {
	b, err := os.ReadFile("/proc/sys/kernel/random/uuid")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
