package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// The daemon end to end, for issue 20's two checks: a stand-in pod (its
// cgroup with a process, its CSI volume on a FUSE mount) whose volume is
// unmounted while it runs and which then writes into the plain directory,
// and a remount loop stacking bind mounts on one point. Each is one
// mountwatchd_problem series with the pod and volume, and one journal entry
// with its MESSAGE_ID when it appears and one when it clears; the table's
// size is exported.
func TestDaemonUnmountedVolumeAndMountLeak(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "bindfs", "bindfs")
	journalDir, _ := testenv.StartJournald(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	kubelet, logs := dir+"/kubelet", dir+"/logs"
	uid := fmt.Sprintf("da3e0000-%04x-4000-8000-000000000020", os.Getpid()&0xffff)
	if err := os.MkdirAll(filepath.Join(logs, "shop_web-0_"+uid), 0o755); err != nil {
		t.Fatal(err)
	}
	pod := testenv.StartPodCgroup(t, testenv.PodHierarchies(t), "systemd", "burstable", uid)
	vol := testenv.KubeletPodVolume(t, kubelet, uid, "pvc-data", "cephfs.csi.ceph.com", "0001-0011-data")
	if err := os.MkdirAll(dir+"/backing", 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Bindfs(t, dir+"/backing", vol, "subtype=ceph-fuse")

	d := startDaemon(t, nil, "--path.kubelet", kubelet, "--path.pod-logs", logs, "--interval=100ms",
		"--probe.interval=200ms", "--unmounted-volume.grace=1s", "--log.target=auto")
	// /healthz answers once the table is read; the table's figures come
	// with the first published run of the checks, a moment later.
	testenv.WaitUntil(t, 10*time.Second, "the first run's table figures", func() bool {
		_, ok := value(d.metrics(), "mountwatchd_mount_table_size ")
		return ok
	})
	if v, ok := value(d.metrics(), "mountwatchd_mount_table_size "); !ok || v < 5 {
		t.Errorf("mountwatchd_mount_table_size %v %v", v, ok)
	}
	if v, ok := value(d.metrics(), "mountwatchd_mount_table_max "); !ok || v <= 0 {
		t.Errorf("mountwatchd_mount_table_max %v %v", v, ok)
	}

	// The volume goes, the pod writes.
	if err := syscall.Unmount(vol, 0); err != nil {
		t.Fatal(err)
	}
	pod.WriteFile(vol + "/order-1.json")
	// The series names the volume's directory (directory) besides the
	// filesystem the writes land on (mountpoint), and its CSI driver.
	unmounted := fmt.Sprintf(`mountwatchd_problem{check="unmounted_volume",csi_driver="cephfs.csi.ceph.com",directory=%q,fstype="tmpfs",mountpoint=%q,`+
		`pod_name="web-0",pod_namespace="shop",pod_uid=%q,severity="critical",source=`, vol, dir, uid)
	testenv.WaitUntil(t, 30*time.Second, "unmounted_volume", func() bool {
		v, _ := value(d.metrics(), unmounted)
		return v == 1
	})

	// A remount loop on another pod volume's mount point.
	loop := testenv.KubeletPodVolume(t, kubelet, uid, "pvc-loop", "cephfs.csi.ceph.com", "0001-0011-loop")
	for range check.DefaultMaxStacked + 1 {
		if err := syscall.Mount(dir+"/backing", loop, "", syscall.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
	}
	leak := fmt.Sprintf(`mountwatchd_problem{check="mount_leak",csi_driver="cephfs.csi.ceph.com",directory=%q,fstype="tmpfs",mountpoint=%q,pod_name="web-0"`, loop, loop)
	testenv.WaitUntil(t, 30*time.Second, "mount_leak", func() bool {
		v, _ := value(d.metrics(), leak)
		return v == 1
	})
	for range check.DefaultMaxStacked + 1 {
		if err := syscall.Unmount(loop, 0); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Bind(t, dir+"/backing", vol) // mounted again (over the file the pod wrote)
	testenv.WaitUntil(t, 30*time.Second, "both to clear", func() bool {
		body := d.metrics()
		return !strings.Contains(body, `mountwatchd_problem{check="unmounted_volume"`) && !strings.Contains(body, `mountwatchd_problem{check="mount_leak"`)
	})

	for _, c := range []struct {
		id    finding.ID
		match string
		want  map[string]string
	}{
		{check.UnmountedVolume, "PATH=" + vol, map[string]string{"POD_NAME": "web-0", "POD_NAMESPACE": "shop", "VOLUME": "pvc-data",
			"CSI_DRIVER": "cephfs.csi.ceph.com", "SEVERITY": "critical"}},
		{check.MountLeak, "MOUNT_POINT=" + loop, map[string]string{"POD_NAME": "web-0", "VOLUME": "pvc-loop", "SEVERITY": "warning"}},
	} {
		var entries []map[string]any
		testenv.WaitUntil(t, 20*time.Second, string(c.id)+"'s journal entries", func() bool {
			entries = testenv.JournalEntries(t, journalDir, "MESSAGE_ID="+export.MessageIDs[c.id], c.match)
			return len(entries) >= 2
		})
		if len(entries) != 2 || entries[0]["EVENT"] != "appeared" || entries[1]["EVENT"] != "cleared" {
			t.Fatalf("%s: %d journal entries, want appeared and cleared: %v", c.id, len(entries), entries)
		}
		for k, v := range c.want {
			if entries[0][k] != v {
				t.Errorf("%s: %s = %v, want %q", c.id, k, entries[0][k], v)
			}
		}
	}
	if detail, _ := testenv.JournalEntries(t, journalDir, "MESSAGE_ID="+export.MessageIDs[check.UnmountedVolume])[0]["DETAIL"].(string); !strings.Contains(detail, "1 file ") {
		t.Errorf("unmounted_volume's journal DETAIL does not count the file the pod wrote: %q", detail)
	}
}

// --once reports a stack of mounts (one read is enough for a stack) and
// exits 1, in text and JSON; the JSON names fs.mount-max.
func TestOnceMountLeakStacked(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	mp := dir + "/point"
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		testenv.Bind(t, dir, mp)
	}
	r := mountwatchd(t, "--once", "--output=json")
	if r.code != exitProblems {
		t.Errorf("exit %d, want %d", r.code, exitProblems)
	}
	doc := decode(t, r)
	var found []finding.Finding
	for _, f := range doc.Findings {
		if f.Check == check.MountLeak {
			found = append(found, f)
		}
	}
	if len(found) != 1 || found[0].MountPoint != mp || found[0].Details["count"] != "20" {
		t.Fatalf("--once: %+v", found)
	}
	if doc.MountTable == nil || doc.MountTable.MountMax <= 0 {
		t.Errorf("mount_table: %+v", doc.MountTable)
	}
}
