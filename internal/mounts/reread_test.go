package mounts

import (
	"os"
	"path/filepath"
	"testing"
)

// rereadHost is kubeletTree's host with a fake procfs whose self/mountinfo
// the test writes: a root mount, the CSI pod volume and its staging mount
// (one filesystem, 0:50) and a tmpfs outside the kubelet root.
func rereadHost(t *testing.T) (Host, func(extra string)) {
	t.Helper()
	root, h := kubeletTree(t)
	h.Procfs = filepath.Join(root, "proc")
	if err := os.MkdirAll(filepath.Join(h.Procfs, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	kr := h.KubeletRoot
	table := "22 1 259:1 / / rw - ext4 /dev/vda rw\n" +
		"40 22 0:50 / " + kr + "/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/abc/globalmount rw - ceph 10.0.0.1:/vol rw\n" +
		"41 22 0:50 / " + kr + "/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount rw - ceph 10.0.0.1:/vol rw\n" +
		"42 22 0:51 / /mnt/scratch rw - tmpfs tmpfs rw\n"
	write := func(extra string) {
		t.Helper()
		tmp := filepath.Join(h.Procfs, "self", "mountinfo.tmp")
		writeFile(t, tmp, table+extra)
		if err := os.Rename(tmp, h.MountinfoPath()); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	return h, write
}

// mountValues are the mounts of s as values, with their Kubernetes context,
// to compare two snapshots whatever their pointers.
func mountValues(s *Snapshot) []Mount {
	var out []Mount
	for _, m := range s.Mounts {
		v := *m
		if m.Kube != nil {
			k := *m.Kube
			v.Kube = &k
		}
		out = append(out, v)
	}
	return out
}

func sameMounts(t *testing.T, got, want *Snapshot) {
	t.Helper()
	g, w := mountValues(got), mountValues(want)
	if len(g) != len(w) {
		t.Fatalf("%d mounts, want %d", len(g), len(w))
	}
	for i := range g {
		gk, wk := g[i].Kube, w[i].Kube
		g[i].Kube, w[i].Kube = nil, nil
		if g[i] != w[i] || (gk == nil) != (wk == nil) || (gk != nil && *gk != *wk) {
			t.Errorf("mount %d: got %+v %+v, want %+v %+v", i, g[i], gk, w[i], wk)
		}
	}
	if got.Host != want.Host || got.Layout.Decision() != want.Layout.Decision() {
		t.Errorf("host %+v layout %q, want %+v %q", got.Host, got.Layout.Decision(), want.Host, want.Layout.Decision())
	}
}

// An unchanged table read again is not parsed again: the new snapshot
// shares the mounts and indexes of the last one, has its own time, and is
// what a fresh read says.
func TestRereadUnchangedTableSharesParse(t *testing.T) {
	h, _ := rereadHost(t)
	first, err := RereadSnapshot(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := RereadSnapshot(h, first)
	if err != nil {
		t.Fatal(err)
	}
	if !again.SameTable(first) {
		t.Fatal("an unchanged table was parsed again")
	}
	if again == first || !again.Taken.After(first.Taken) {
		t.Errorf("the read again is not a snapshot of its own: same=%v taken %v, first %v", again == first, again.Taken, first.Taken)
	}
	m := again.ByMountpoint("/mnt/scratch")
	if len(m) != 1 || again.ByID[42] != m[0] || again.ByDev("0:50")[1] != again.Mounts[2] {
		t.Errorf("indexes of the shared parse: %v %v", m, again.ByDev("0:50"))
	}
	fresh, err := RereadSnapshot(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.SameTable(first) {
		t.Error("ReadSnapshot shared a parse")
	}
	sameMounts(t, again, fresh)
	if k := again.ByID[41].Kube; k == nil || k.PodName != "web-0" || k.CSIDriver != "cephfs.csi.ceph.com" {
		t.Errorf("pod volume: %+v", k)
	}
}

// A changed table is parsed: one more line, or the same number of lines
// with one changed.
func TestRereadChangedTableParses(t *testing.T) {
	h, write := rereadHost(t)
	first, err := RereadSnapshot(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	write("43 22 0:52 / /mnt/new rw - tmpfs tmpfs rw\n")
	added, err := RereadSnapshot(h, first)
	if err != nil {
		t.Fatal(err)
	}
	if added.SameTable(first) || len(added.ByMountpoint("/mnt/new")) != 1 || len(first.ByMountpoint("/mnt/new")) != 0 {
		t.Fatalf("a mount added: shared=%v, new mount %v, in the old snapshot %v",
			added.SameTable(first), added.ByMountpoint("/mnt/new"), first.ByMountpoint("/mnt/new"))
	}
	write("43 22 0:52 / /mnt/new ro - tmpfs tmpfs rw\n") // same length, one byte changed
	changed, err := RereadSnapshot(h, added)
	if err != nil {
		t.Fatal(err)
	}
	if changed.SameTable(added) || changed.ByID[43].Options != "ro" || added.ByID[43].Options != "rw" {
		t.Errorf("a mount made read-only: shared=%v, options %q (before %q)", changed.SameTable(added), changed.ByID[43].Options, added.ByID[43].Options)
	}
}

// What a snapshot takes from kubelet's files is read on every read: a pod
// log directory made, or a vol_data.json rewritten, since the last read
// gives a snapshot of its own with the new context, although the table did
// not change; the last snapshot is left as it was.
func TestRereadSeesKubeletFilesChange(t *testing.T) {
	h, _ := rereadHost(t)
	kr := h.KubeletRoot
	if err := os.RemoveAll(filepath.Join(h.PodLogDir, "shop_web-0_u1")); err != nil {
		t.Fatal(err)
	}
	first, err := RereadSnapshot(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k := first.ByID[41].Kube; k.PodName != "" {
		t.Fatalf("pod named without its log directory: %+v", k)
	}
	if err := os.MkdirAll(filepath.Join(h.PodLogDir, "shop_web-0_u1"), 0o755); err != nil {
		t.Fatal(err)
	}
	named, err := RereadSnapshot(h, first)
	if err != nil {
		t.Fatal(err)
	}
	if named.SameTable(first) || named.ByID[41].Kube.PodName != "web-0" || first.ByID[41].Kube.PodName != "" {
		t.Fatalf("pod log directory made: shared=%v, pod %q (before %q)", named.SameTable(first),
			named.ByID[41].Kube.PodName, first.ByID[41].Kube.PodName)
	}

	writeFile(t, filepath.Join(kr, "plugins/kubernetes.io/csi/cephfs.csi.ceph.com/abc/vol_data.json"),
		`{"driverName":"cephfs.csi.ceph.com","volumeHandle":"0001-0011-csi-vol-2","specVolID":"pvc-1"}`)
	rewritten, err := RereadSnapshot(h, named)
	if err != nil {
		t.Fatal(err)
	}
	if rewritten.SameTable(named) || rewritten.ByID[40].Kube.VolumeHandle != "0001-0011-csi-vol-2" {
		t.Fatalf("vol_data.json rewritten: shared=%v, handle %q", rewritten.SameTable(named), rewritten.ByID[40].Kube.VolumeHandle)
	}
	fresh, err := RereadSnapshot(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	sameMounts(t, rewritten, fresh)
	if again, err := RereadSnapshot(h, rewritten); err != nil || !again.SameTable(rewritten) {
		t.Errorf("nothing changed since: shared=%v, %v", again.SameTable(rewritten), err)
	}
}

// A captured table is never shared: ReadCapturedTable has no last read.
// And a read that fails returns no snapshot, whatever the last one.
func TestRereadFailedRead(t *testing.T) {
	h, _ := rereadHost(t)
	first, err := RereadSnapshot(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(h.MountinfoPath()); err != nil {
		t.Fatal(err)
	}
	if s, err := RereadSnapshot(h, first); err == nil || s != nil {
		t.Errorf("table gone: %v, %v", s, err)
	}
}
