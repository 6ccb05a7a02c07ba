package check

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/beneath"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// capturedTables are every real table under internal/mounts/testdata.
func capturedTables(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../mounts/testdata/*.mountinfo")
	if err != nil || len(files) < 9 {
		t.Fatalf("captured tables: %v %v", files, err)
	}
	return files
}

// TestHiddenCandidatesCapturedTables: on every captured table, the mounts
// looked at are exactly the FUSE, network, pod volume and CSI staging
// mounts with a parent that cannot hang; never /, /proc and /sys masks,
// systemd's /run, /tmp, /dev, cgroups or the runtime's own mounts.
func TestHiddenCandidatesCapturedTables(t *testing.T) {
	want := map[string][]string{
		"capture-bindfs-deleted.mountinfo": {"/w/fuse",
			"/w/var/lib/kubelet/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/3f2a/globalmount",
			"/w/var/lib/kubelet/pods/0d5f7a8e-4b1c-4e7e-9a63-3c2a1f0e9b11/volume-subpaths/pvc-2/app/0", // a FUSE mount
			"/w/var/lib/kubelet/pods/0d5f7a8e-4b1c-4e7e-9a63-3c2a1f0e9b11/volumes/kubernetes.io~csi/pvc-1/mount",
			"/w/var/lib/kubelet/pods/0d5f7a8e-4b1c-4e7e-9a63-3c2a1f0e9b11/volumes/kubernetes.io~csi/pvc-2/mount"},
		"k8s-node-brief.mountinfo": {
			"/var/lib/kubelet/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/1b7e0c6f33a4d8b1a9a1f2c1d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4/globalmount",
			"/var/lib/kubelet/pods/7c3e1f0a-2b4d-4c6e-8f10-123456789abc/volume-subpaths/pvc-2/app/0",
			"/var/lib/kubelet/pods/7c3e1f0a-2b4d-4c6e-8f10-123456789abc/volumes/kubernetes.io~csi/pvc-1/mount",
			"/var/lib/kubelet/pods/7c3e1f0a-2b4d-4c6e-8f10-123456789abc/volumes/kubernetes.io~csi/pvc-2/mount",
			"/var/lib/kubelet/pods/7c3e1f0a-2b4d-4c6e-8f10-123456789abc/volumes/kubernetes.io~projected/kube-api-access-x7k2p"},
		"layout-f1-data-kubernetes.mountinfo": {
			"/data/kubernetes/kubelet/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/0f3a9c1b2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8/globalmount",
			"/data/kubernetes/kubelet/pods/92f2591b-66b5-4843-b7a7-42d0acd2be07/volumes/kubernetes.io~csi/dashboard-folder/mount",
			"/data/kubernetes/kubelet/pods/92f2591b-66b5-4843-b7a7-42d0acd2be07/volumes/kubernetes.io~projected/kube-api-access-9xq2d", "/fuse"},
		"layout-k3s.mountinfo": {
			"/var/lib/kubelet/pods/6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d/volumes/kubernetes.io~local-volume/pvc-11",
			"/var/lib/kubelet/pods/6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d/volumes/kubernetes.io~projected/kube-api-access-7bq5t"},
		"layout-nvme.mountinfo": {
			"/data/nvme0n1/kubelet/plugins/kubernetes.io/csi/ebs.csi.aws.com/5c1f0d9e8b7a69584736251403f2e1d0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a/globalmount",
			"/data/nvme0n1/kubelet/pods/3b0c2e1d-5f4a-4b6c-8d7e-9f0a1b2c3d4e/volumes/kubernetes.io~csi/pvc-0a1b2c3d/mount",
			"/data/nvme0n1/kubelet/pods/3b0c2e1d-5f4a-4b6c-8d7e-9f0a1b2c3d4e/volumes/kubernetes.io~projected/kube-api-access-4k8mz"},
		// Ambiguous: the default root is kept, and the mounts under every
		// root the table shows are kubelet's.
		"layout-two-roots.mountinfo": {
			"/data/kubelet/pods/1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6/volumes/kubernetes.io~projected/kube-api-access-q1w2e",
			"/var/lib/kubelet/pods/1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6/volumes/kubernetes.io~projected/kube-api-access-q1w2e"},
		"layout-two-kubelets.mountinfo": {
			"/data/kubernetes/kubelet/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/0f3a9c1b2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8/globalmount",
			"/data/kubernetes/kubelet/pods/92f2591b-66b5-4843-b7a7-42d0acd2be07/volumes/kubernetes.io~csi/dashboard-folder/mount",
			"/fuse",
			"/var/lib/k0s/kubelet/pods/4c3b2a19-0f8e-4d7c-b6a5-948372615aab/volumes/kubernetes.io~local-volume/pvc-logs"},
	}
	for _, file := range capturedTables(t) {
		s, err := mounts.ReadCapturedTable(file, mounts.Host{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range hiddenCandidates(s) {
			got = append(got, c.m.Mountpoint)
			if !strings.HasPrefix(c.dir, "/") || c.parent.MayHang() || c.parent.Pseudo() {
				t.Errorf("%s: %s: bad candidate %+v", file, c.m.Mountpoint, c)
			}
		}
		slices.Sort(got)
		if w := want[filepath.Base(file)]; !slices.Equal(got, w) {
			t.Errorf("%s: candidates\n%q\nwant\n%q", filepath.Base(file), got, w)
		}
	}
}

// TestReachUnderneath: in our own namespace the parent itself; in another
// one a mount of the same filesystem whose root holds the directory, never
// one that may hang or is covered, never a different filesystem.
func TestReachUnderneath(t *testing.T) {
	target := tableSnapshot(t, `20 1 8:1 / / rw - ext4 /dev/sda1 rw
30 20 8:1 /var/lib/kubelet /var/lib/kubelet rw - ext4 /dev/sda1 rw
40 30 0:50 /v /var/lib/kubelet/pods/92f2591b-66b5-4843-b7a7-42d0acd2be07/volumes/kubernetes.io~csi/pv/mount rw - fuse.ceph-fuse ceph-fuse rw
`, "/var/lib/kubelet")
	cands := hiddenCandidates(target)
	if len(cands) != 1 || cands[0].dir != "/var/lib/kubelet/pods/92f2591b-66b5-4843-b7a7-42d0acd2be07/volumes/kubernetes.io~csi/pv/mount" {
		t.Fatalf("candidates = %+v", cands)
	}
	c := cands[0]
	if o, rel, ok := reachUnderneath(c, target, true); !ok || o != c.parent || rel != "pods/92f2591b-66b5-4843-b7a7-42d0acd2be07/volumes/kubernetes.io~csi/pv/mount" {
		t.Errorf("own namespace: %v %q %v", o, rel, ok)
	}
	// A systemd unit's namespace: the same filesystems at the same places.
	own := tableSnapshot(t, `120 100 8:1 / / ro - ext4 /dev/sda1 rw
121 120 0:60 / /tmp rw - tmpfs tmpfs rw
122 120 8:1 /var/lib /srv/varlib ro - ext4 /dev/sda1 rw
`, "")
	if o, rel, ok := reachUnderneath(c, own, false); !ok || o.ID != 122 || rel != "kubelet/pods/92f2591b-66b5-4843-b7a7-42d0acd2be07/volumes/kubernetes.io~csi/pv/mount" {
		t.Errorf("a copy: %v %q %v (want the deepest root that holds it, mount 122)", o, rel, ok)
	}
	// An overlay parent whose lower layer is on NFS may hang: not looked at.
	ovl := tableSnapshot(t, `20 1 8:1 / / rw - ext4 /dev/sda1 rw
21 20 0:40 / /srv/nfs rw - nfs4 server:/export rw
22 20 0:41 / /ctr rw - overlay overlay rw,lowerdir=/srv/nfs/layer,upperdir=/u,workdir=/w
23 22 0:42 / /ctr/mnt/data rw - fuse.s3fs s3fs rw
24 20 0:43 / /ctr2 rw - overlay overlay rw,lowerdir=/l,upperdir=/u2,workdir=/w2
25 24 0:44 / /ctr2/mnt/data rw - fuse.s3fs s3fs rw
`, "")
	var got []string
	for _, c := range hiddenCandidates(ovl) {
		got = append(got, c.m.Mountpoint)
	}
	if !slices.Equal(got, []string{"/srv/nfs", "/ctr2/mnt/data"}) { // the NFS mount itself sits on ext4
		t.Errorf("overlay parents: candidates %q, want only the one whose layers cannot hang", got)
	}
	// A container: only its own overlay and files bound from the node's disk.
	own = tableSnapshot(t, `500 400 0:70 / / rw - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
501 500 8:1 /var/lib/kubelet/pods/x/etc-hosts /etc/hosts rw - ext4 /dev/sda1 rw
502 500 0:71 / /var/lib/kubelet rw - fuse.sshfs host:/x rw
`, "")
	if o, _, ok := reachUnderneath(c, own, false); ok {
		t.Errorf("reached through %+v", o)
	}
}

func tableSnapshot(t *testing.T, table, kubelet string) *mounts.Snapshot {
	t.Helper()
	f := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(f, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := mounts.ReadCapturedTable(f, mounts.Host{KubeletRoot: kubelet})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHiddenFinding(t *testing.T) {
	s := tableSnapshot(t, `20 1 8:1 / / rw - ext4 /dev/sda1 rw
40 20 0:50 /v /data/kubernetes/kubelet/pods/92f2591b-66b5-4843-b7a7-42d0acd2be07/volumes/kubernetes.io~csi/dashboard-folder/mount rw - fuse.ceph-fuse ceph-fuse rw
`, "")
	c := hiddenCandidates(s)[0]
	if _, ok := hiddenFinding(c, beneath.Listing{}); ok {
		t.Error("an empty directory is a finding")
	}
	f, ok := hiddenFinding(c, beneath.Listing{Names: []string{"a", "b", "c", "d", "e", "f\nnewline"}, More: true})
	if !ok || f.Severity != finding.Warning || f.Check != HiddenEntries || f.Details["hidden_entries"] != "6+" ||
		f.Details["hidden_names"] != `"a" "b" "c" "d" "e"` || f.PodUID != "92f2591b-66b5-4843-b7a7-42d0acd2be07" || f.Volume != "dashboard-folder" {
		t.Fatalf("finding = %+v", f)
	}
	for _, want := range []string{"6+ entries (a, b, c, d, e, ...)", "pod 92f2591b-66b5-4843-b7a7-42d0acd2be07 wrote into volume dashboard-folder while it was not mounted",
		"mount --bind / /mnt/x", "/mnt/x/data/kubernetes/kubelet/pods/"} {
		if !strings.Contains(f.Message, want) {
			t.Errorf("message does not say %q:\n%s", want, f.Message)
		}
	}
}

func runHidden(t *testing.T, h mounts.Host) ([]finding.Finding, []string, error) {
	t.Helper()
	out := (&HiddenEntriesCheck{}).Run(context.Background(), &Env{Snapshot: liveSnapshot(t, h)})
	return out.Findings, out.Notes, out.Err
}

// TestLiveHiddenEntriesThisMachine: this machine's own table (the test's
// private copy of it) gives no finding and no error.
func TestLiveHiddenEntriesThisMachine(t *testing.T) {
	testenv.RequireRoot(t)
	found, _, err := runHidden(t, mounts.Host{})
	if len(found) > 0 || err != nil {
		t.Fatalf("a healthy machine: %+v, %v", found, err)
	}
}

// TestLiveHiddenUnderFUSEStaging: ceph-fuse restarted with -o nonempty
// over a staging directory that still held a file (bindfs as the FUSE
// server): one hidden_entries finding naming the file; the pod volume
// published from it, mounted over an empty directory, none.
func TestLiveHiddenUnderFUSEStaging(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	kubelet := dir + "/data/kubernetes/kubelet"
	stage := kubelet + "/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/0f3a/globalmount"
	vol := testenv.KubeletPodVolume(t, kubelet, "92f2591b-66b5-4843-b7a7-42d0acd2be07", "dashboard-folder", "cephfs.csi.ceph.com", "vol-1")
	mkdirs(t, dir+"/backing/volumes/csi/v1", stage)
	if err := os.WriteFile(stage+"/client.admin.log", []byte("left by the old mount"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Bindfs(t, dir+"/backing", stage, "nonempty", "subtype=ceph-fuse")
	testenv.Bind(t, stage+"/volumes/csi/v1", vol)

	found, _, err := runHidden(t, mounts.Host{})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 {
		t.Fatalf("want one finding, got %+v", found)
	}
	f := found[0]
	if f.MountPoint != stage || f.Details["hidden_names"] != `"client.admin.log"` || f.Details["hidden_entries"] != "1" ||
		f.FSType != "fuse.ceph-fuse" || f.Kind != mounts.CSIStaging || f.CSIDriver != "cephfs.csi.ceph.com" {
		t.Fatalf("finding = %+v", f)
	}
	if !strings.Contains(f.Message, "client.admin.log") || !strings.Contains(f.Message, "-o nonempty") {
		t.Errorf("message: %s", f.Message)
	}
}

// TestLiveHiddenUnderPodVolume: a pod wrote into its volume directory
// while the volume was not mounted, then the volume was mounted over it:
// one finding naming the file, the pod and the volume (kubelet's root
// found from the table, no flag).
func TestLiveHiddenUnderPodVolume(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	kubelet := dir + "/data/kubernetes/kubelet"
	vol := testenv.KubeletPodVolume(t, kubelet, "92f2591b-66b5-4843-b7a7-42d0acd2be07", "dashboard-folder", "cephfs.csi.ceph.com", "vol-1")
	mkdirs(t, dir+"/backing")
	if err := os.WriteFile(vol+"/dashboard.json", []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.FakeCephFuse(t, dir+"/backing", vol)

	found, _, err := runHidden(t, mounts.Host{})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 {
		t.Fatalf("want one finding, got %+v", found)
	}
	f := found[0]
	if f.MountPoint != vol || f.Details["hidden_names"] != `"dashboard.json"` || f.PodUID != "92f2591b-66b5-4843-b7a7-42d0acd2be07" ||
		f.Volume != "dashboard-folder" || f.CSIDriver != "cephfs.csi.ceph.com" {
		t.Fatalf("finding = %+v", f)
	}
	if !strings.Contains(f.Message, "wrote into volume dashboard-folder while it was not mounted") {
		t.Errorf("message: %s", f.Message)
	}
}

// TestLiveHiddenNeverTouchesAHungParent: a FUSE mount over a non-empty
// directory of another FUSE mount whose server is stopped: the parent may
// hang, so it is not looked at, and the run returns.
func TestLiveHiddenNeverTouchesAHungParent(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	mkdirs(t, dir+"/outer-src/inner", dir+"/inner-src", dir+"/outer")
	if err := os.WriteFile(dir+"/outer-src/inner/hidden", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	outer := testenv.Bindfs(t, dir+"/outer-src", dir+"/outer", "subtype=s3fs")
	testenv.Bindfs(t, dir+"/inner-src", dir+"/outer/inner", "nonempty", "subtype=sshfs")
	s := liveSnapshot(t, mounts.Host{})
	if err := outer.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = outer.Signal(syscall.SIGCONT) })
	found, err := runOne(&HiddenEntriesCheck{}, s)
	if err != nil || len(found) != 0 {
		t.Fatalf("a mount under a hung FUSE parent: %+v, %v", found, err)
	}
}

// TestLiveHiddenOtherNamespace: a stand-in node in a mount namespace of its
// own. A mount it made over a directory of a filesystem that is mounted in
// ours too (a systemd unit's namespace copies the host's) is found through
// our mount of that filesystem; with only its own filesystems (a
// DaemonSet's container sees none of the node's) the check is skipped and
// says why.
func TestLiveHiddenOtherNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	shared, private := t.TempDir(), t.TempDir()
	testenv.Tmpfs(t, shared)
	mkdirs(t, shared+"/srv/sshfs", shared+"/src")
	if err := os.WriteFile(shared+"/srv/sshfs/before-remount", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	node := testenv.NewNode(t, fmt.Sprintf(`mount -t tmpfs over %s/srv/sshfs
mount -t tmpfs node-only %s && mkdir %s/d && touch %s/d/f`, shared, private, private, private))
	found, _, err := runHidden(t, mounts.Host{PID: node.PID})
	// The tmpfs over srv/sshfs is neither FUSE nor kubelet's: no candidate.
	if len(found) != 0 || err != nil {
		t.Fatalf("no candidate: %+v %v", found, err)
	}
	// A FUSE server in the node's namespace, over the shared directory.
	node.Run(fmt.Sprintf("umount %s/srv/sshfs && bindfs -o nonempty,subtype=sshfs %s/src %s/srv/sshfs", shared, shared, shared))
	t.Cleanup(func() { killByArgs(shared + "/src") })
	found, _, err = runHidden(t, mounts.Host{PID: node.PID})
	if err != nil || len(found) != 1 || found[0].Details["hidden_names"] != `"before-remount"` {
		t.Fatalf("through our mount of the same filesystem: %+v %v", found, err)
	}
	// Only the node's own filesystem under it.
	node.Run(fmt.Sprintf("bindfs -o nonempty,subtype=sshfs %s/src %s/d", shared, private))
	t.Cleanup(func() { killByArgs(private + "/d") })
	found, notes, err := runHidden(t, mounts.Host{PID: node.PID})
	if len(found) != 1 || err != nil || !slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, "1 mounts left out") }) {
		t.Fatalf("one reachable, one not: %+v %v %q", found, err, notes)
	}
	node.Run(fmt.Sprintf("fusermount3 -u %s/srv/sshfs || umount -l %s/srv/sshfs", shared, shared))
	found, _, err = runHidden(t, mounts.Host{PID: node.PID})
	var se *SkipError
	if len(found) != 0 || !errors.As(err, &se) || se.Cause != "another mount namespace" {
		t.Fatalf("none reachable: %+v %v", found, err)
	}
}

// killByArgs kills the processes (bindfs servers) whose command line holds
// arg, which only this test's servers do.
func killByArgs(arg string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		data, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(data), arg) || !strings.HasPrefix(string(data), "bindfs") {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
