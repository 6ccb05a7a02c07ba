package check

import (
	"strings"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

func TestShadowedMountTable(t *testing.T) {
	lines := []string{
		"1 1 8:1 / / rw - ext4 /dev/sda rw",
		// Routine stacking, not reported: /dev/shm and /dev/pts twice (this
		// VM's own table), an autofs trigger covered by its mount, and the
		// same directory bound over itself.
		"84 1 0:6 / /dev rw - devtmpfs devtmpfs rw",
		"85 84 0:23 / /dev/shm rw - tmpfs tmpfs rw",
		"86 85 0:27 / /dev/shm rw - tmpfs tmpfs rw",
		"87 84 0:24 / /dev/pts rw - devpts devpts rw",
		"88 87 0:26 / /dev/pts rw - devpts devpts rw",
		"90 1 0:30 / /mnt/auto rw - autofs systemd-1 rw",
		"91 90 0:31 / /mnt/auto rw - nfs4 srv:/a rw",
		"92 1 8:1 /srv /srv rw - ext4 /dev/sda rw",
		"93 92 8:1 /srv /srv rw - ext4 /dev/sda rw",
		// A ceph-fuse staging mount hidden by a new one, with two pod bind
		// mounts on the hidden connection: critical.
		"60 1 0:39 / /var/lib/kubelet/plugins/kubernetes.io/csi/c/1/globalmount rw - fuse.ceph-fuse ceph-fuse rw",
		"61 1 0:39 /v1 /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/p1/mount rw - fuse.ceph-fuse ceph-fuse rw",
		"62 1 0:39 /v2 /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/p2/mount rw - fuse.ceph-fuse ceph-fuse rw",
		"63 60 0:45 / /var/lib/kubelet/plugins/kubernetes.io/csi/c/1/globalmount rw - fuse.ceph-fuse ceph-fuse rw",
		// A disk hidden by a tmpfs: warning.
		"70 1 8:17 / /data rw - xfs /dev/sdb rw",
		"71 70 0:50 / /data rw - tmpfs tmpfs rw",
		// A FUSE mount hidden with nothing else on it, stale unknown: warning.
		"72 1 0:51 / /mnt/s3 rw - fuse.s3fs s3fs rw",
		"73 72 0:52 / /mnt/s3 rw - fuse.s3fs s3fs rw",
	}
	ms, _, _, err := mounts.ParseMountTableLimit(strings.NewReader(strings.Join(lines, "\n")), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		m.Kube = mounts.ParseKubePath(mounts.DefaultKubeletRoot, m.Mountpoint)
	}
	s := mounts.IndexSnapshot(&mounts.Snapshot{Mounts: ms})
	found, err := runOne(ShadowedMountCheck{}, s)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]finding.Finding{}
	for _, f := range found {
		got[f.MountID] = f
	}
	want := map[int]finding.Severity{60: finding.Critical, 70: finding.Warning, 72: finding.Warning}
	if len(got) != len(want) {
		t.Errorf("got %d findings, want %d: %+v", len(got), len(want), found)
	}
	for id, sev := range want {
		if f, ok := got[id]; !ok || f.Severity != sev {
			t.Errorf("mount %d: %+v, want %s", id, f, sev)
		}
	}
	if f := got[60]; f.Details["other_mounts"] != "2" || f.Details["covered_by_mount_id"] != "63" ||
		!strings.Contains(f.Message, "2 pod volumes") {
		t.Errorf("ceph-fuse shadow: %v %s", f.Details, f.Message)
	}

	// The hidden mount cannot be reached by its path; its bind mounts can.
	if s.Reachable(s.ByID[60]) || !s.Reachable(s.ByID[61]) || !s.Reachable(s.ByID[63]) {
		t.Error("Reachable is wrong for the stacked ceph-fuse mounts")
	}
}

func TestShadowedVMTableIsQuiet(t *testing.T) {
	found, err := runOne(ShadowedMountCheck{}, snapshotOf(t, "host-vm-6.18.mountinfo"))
	if err != nil || len(found) != 0 {
		t.Errorf("this VM's own stacked /dev/shm and /dev/pts are reported: %+v %v", found, err)
	}
}
