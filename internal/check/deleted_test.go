package check

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

func snapshotOf(t *testing.T, name string) *mounts.Snapshot {
	t.Helper()
	s, err := mounts.ReadCapturedTable("../mounts/testdata/"+name, mounts.Host{KubeletRoot: mounts.DefaultKubeletRoot})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDeletedRootOnBriefNode(t *testing.T) {
	s := snapshotOf(t, "k8s-node-brief.mountinfo")
	found, err := runOne(DeletedRootCheck{}, s)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]finding.Finding{}
	for _, f := range found {
		if f.Check != DeletedRoot {
			t.Errorf("check %q", f.Check)
		}
		got[f.MountPoint] = f
	}
	pod := "/var/lib/kubelet/pods/7c3e1f0a-2b4d-4c6e-8f10-123456789abc"
	want := map[string]finding.Severity{
		pod + "/volumes/kubernetes.io~csi/pvc-1/mount": finding.Critical, // FUSE pod volume (the brief's line)
		pod + "/volume-subpaths/pvc-2/app/0":           finding.Critical, // subpath
		"/srv/export":                                  finding.Warning,  // plain ext4 bind mount
		"/mnt/scratch (deleted)":                       finding.Warning,  // deleted mount point
	}
	if len(got) != len(want) {
		t.Errorf("got %d findings, want %d: %v", len(got), len(want), found)
	}
	for mp, sev := range want {
		f, ok := got[mp]
		if !ok {
			t.Errorf("no finding for %s", mp)
			continue
		}
		if f.Severity != sev {
			t.Errorf("%s: severity %s, want %s", mp, f.Severity, sev)
		}
	}

	f := got[pod+"/volumes/kubernetes.io~csi/pvc-1/mount"]
	if f.PodUID != "7c3e1f0a-2b4d-4c6e-8f10-123456789abc" || f.Volume != "pvc-1" || f.VolumePlugin != "kubernetes.io~csi" ||
		f.Kind != mounts.PodVolume || f.Dev != "0:39" || f.MountID != 65 || f.Root != "/volumes/csi/vol2//deleted" ||
		f.FSType != "fuse.ceph-fuse" || f.Source != "ceph-fuse" {
		t.Errorf("finding fields: %+v", f)
	}
	for _, want := range []string{"ENOENT", "mount through procfd", "pvc-1", "/volumes/csi/vol2", "Fix:"} {
		if !strings.Contains(f.Message, want) {
			t.Errorf("message lacks %q: %s", want, f.Message)
		}
	}
	if sub := got[pod+"/volume-subpaths/pvc-2/app/0"]; sub.Kind != mounts.SubPath || sub.Container != "app" || sub.Volume != "pvc-2" {
		t.Errorf("subpath context: %+v", sub.Kube)
	}
	if !strings.Contains(got["/mnt/scratch (deleted)"].Message, "sits on was deleted") {
		t.Errorf("deleted mount point message: %s", got["/mnt/scratch (deleted)"].Message)
	}
}

func TestDeletedRootHealthyTables(t *testing.T) {
	for _, name := range []string{"host-vm-6.18.mountinfo"} {
		found, err := runOne(DeletedRootCheck{}, snapshotOf(t, name))
		if err != nil || len(found) != 0 {
			t.Errorf("%s: %v %v", name, found, err)
		}
	}
}

func TestDeletedRootCapturedBindfs(t *testing.T) {
	s, err := mounts.ReadCapturedTable("../mounts/testdata/capture-bindfs-deleted.mountinfo", mounts.Host{KubeletRoot: "/w/var/lib/kubelet"})
	if err != nil {
		t.Fatal(err)
	}
	found, _ := runOne(DeletedRootCheck{}, s)
	if len(found) != 2 {
		t.Fatalf("got %d findings, want 2 (FUSE pod volume and tmpfs bind): %+v", len(found), found)
	}
	SortFindings(found)
	if found[0].Severity != finding.Critical || found[0].PodUID != "0d5f7a8e-4b1c-4e7e-9a63-3c2a1f0e9b11" || found[0].Volume != "pvc-1" {
		t.Errorf("first finding: %+v", found[0])
	}
	if found[1].Severity != finding.Warning || found[1].MountPoint != "/w/b" {
		t.Errorf("second finding: %+v", found[1])
	}
}

func BenchmarkDeletedRoot20000(b *testing.B) {
	ms, _, _, err := mounts.ParseMountTableLimit(strings.NewReader(testenv.KubeletMountTable(20000)), 0)
	if err != nil {
		b.Fatal(err)
	}
	s := &mounts.Snapshot{Mounts: ms}
	b.ResetTimer()
	for b.Loop() {
		if _, err := runOne(DeletedRootCheck{}, s); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDeletedRootLiveFileOrDirectory: on the live system the message says
// whether a file or a directory was deleted, and the masks nspawn and
// container runtimes put over /proc entries (a file bind-mounted there and
// deleted at once) are not reported.
func TestDeletedRootLiveFileOrDirectory(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	mkdirs(t, dir+"/src/d", dir+"/on-dir")
	for _, f := range []string{dir + "/src/f", dir + "/src/mask", dir + "/on-file"} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Bind(t, dir+"/src/d", dir+"/on-dir")
	bindFile := func(src, dst string) {
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dst, unix.MNT_DETACH) })
	}
	bindFile(dir+"/src/f", dir+"/on-file")
	// As nspawn masks /proc/kmsg (in the test's private mount namespace): a
	// file bind-mounted over it, then deleted.
	bindFile(dir+"/src/mask", "/proc/kmsg")
	for _, p := range []string{dir + "/src/d", dir + "/src/f", dir + "/src/mask"} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}

	s := liveSnapshot(t, mounts.Host{})
	found, err := runOne(DeletedRootCheck{}, s)
	if err != nil {
		t.Fatal(err)
	}
	got := byMountpoint(found)
	if f, ok := got["/proc/kmsg"]; ok {
		t.Errorf("the /proc/kmsg mask is reported: %s", f.Message)
	}
	for mp, kind := range map[string]string{dir + "/on-dir": "directory", dir + "/on-file": "file"} {
		f, ok := got[mp]
		if !ok {
			t.Errorf("no finding for %s (a deleted %s)", mp, kind)
			continue
		}
		if f.Details["root_type"] != kind || !strings.HasPrefix(f.Message, "The "+kind+" /") {
			t.Errorf("%s: root_type %q, message %q; want the %s", mp, f.Details["root_type"], f.Message, kind)
		}
	}
	if len(found) != 2 {
		t.Errorf("got %d findings, want 2: %+v", len(found), found)
	}
}

// TestNspawnBootedSystemHealthy: the table of a healthy systemd 252 booted
// by systemd-nspawn over an overlay of / (captured by packaging's
// TestDebUnderSystemd with MOUNTWATCHD_NSPAWN_MOUNTINFO) gives no finding
// and no error from the checks a captured table runs. nspawn's masks of
// /proc/kmsg and /proc/sys/kernel/random/boot_id (files it deleted at once,
// root "/.#proc-kmsg…//deleted") were reported as deleted_root before.
func TestNspawnBootedSystemHealthy(t *testing.T) {
	s := snapshotOf(t, "nspawn-systemd-252.mountinfo")
	masks := 0
	for _, m := range s.Mounts {
		if strings.HasSuffix(m.Root, mounts.DeletedRootSuffix) && strings.HasPrefix(m.Mountpoint, "/proc/") {
			masks++
		}
	}
	if masks != 3 {
		t.Fatalf("the fixture has %d masks of /proc entries, want nspawn's 3", masks)
	}
	rep := (&Runner{Checks: []Check{DeletedRootCheck{}, ShadowedMountCheck{}}}).Run(context.Background(), s)
	if rep.Status() != finding.StatusOK || len(rep.Findings) != 0 {
		t.Errorf("status %s, findings %+v, checks %+v", rep.Status(), rep.Findings, rep.Checks)
	}
}
