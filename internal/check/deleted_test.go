package check

import (
	"context"
	"strings"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

func snapshotOf(t *testing.T, name string) *mounts.Snapshot {
	t.Helper()
	s, err := mounts.ReadSnapshotFile("../mounts/testdata/"+name, mounts.DefaultKubeletRoot)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDeletedRootOnBriefNode(t *testing.T) {
	s := snapshotOf(t, "k8s-node-brief.mountinfo")
	found, err := DeletedRootCheck{}.Run(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Finding{}
	for _, f := range found {
		if f.Check != DeletedRoot {
			t.Errorf("check %q", f.Check)
		}
		got[f.MountPoint] = f
	}
	pod := "/var/lib/kubelet/pods/7c3e1f0a-2b4d-4c6e-8f10-123456789abc"
	want := map[string]Severity{
		pod + "/volumes/kubernetes.io~csi/pvc-1/mount": Critical, // FUSE pod volume (the brief's line)
		pod + "/volume-subpaths/pvc-2/app/0":           Critical, // subpath
		"/srv/export":                                  Warning,  // plain ext4 bind mount
		"/mnt/scratch (deleted)":                       Warning,  // deleted mount point
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
		found, err := DeletedRootCheck{}.Run(context.Background(), snapshotOf(t, name))
		if err != nil || len(found) != 0 {
			t.Errorf("%s: %v %v", name, found, err)
		}
	}
}

func TestDeletedRootCapturedBindfs(t *testing.T) {
	s, err := mounts.ReadSnapshotFile("../mounts/testdata/capture-bindfs-deleted.mountinfo", "/w/var/lib/kubelet")
	if err != nil {
		t.Fatal(err)
	}
	found, _ := DeletedRootCheck{}.Run(context.Background(), s)
	if len(found) != 2 {
		t.Fatalf("got %d findings, want 2 (FUSE pod volume and tmpfs bind): %+v", len(found), found)
	}
	SortFindings(found)
	if found[0].Severity != Critical || found[0].PodUID != "0d5f7a8e-4b1c-4e7e-9a63-3c2a1f0e9b11" || found[0].Volume != "pvc-1" {
		t.Errorf("first finding: %+v", found[0])
	}
	if found[1].Severity != Warning || found[1].MountPoint != "/w/b" {
		t.Errorf("second finding: %+v", found[1])
	}
}

func BenchmarkDeletedRoot20000(b *testing.B) {
	ms, _, err := mounts.ParseMountTable(strings.NewReader(testenv.KubeletMountTable(20000)))
	if err != nil {
		b.Fatal(err)
	}
	s := &mounts.Snapshot{Mounts: ms}
	b.ResetTimer()
	for b.Loop() {
		if _, err := (DeletedRootCheck{}).Run(context.Background(), s); err != nil {
			b.Fatal(err)
		}
	}
}
