package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// The F1 seed as reported: kubelet's root at /data/kubernetes/kubelet.
const (
	seedUID     = "92f2591b-66b5-4843-b7a7-42d0acd2be07"
	seedVolume  = "dashboard-folder"
	seedKubelet = "/data/kubernetes/kubelet"
	seedStaging = seedKubelet + "/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/0f3a9c1b2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8/globalmount"
	seedMount   = seedKubelet + "/pods/" + seedUID + "/volumes/kubernetes.io~csi/" + seedVolume + "/mount"
	seedLocal   = seedKubelet + "/pods/" + seedUID + "/volumes/kubernetes.io~local-volume/pvc-local"
)

// seedNode is a stand-in node whose / is a tmpfs of its own (a process
// chrooted into it, in a mount namespace of its own), so kubelet's root is
// at /data/kubernetes/kubelet as on the seed's node, with the pod's log
// directory at the default /var/log/pods. ceph-fuse (bindfs, fstype
// fuse.ceph-fuse) is staged and its volume directory published to the
// pod; then the directory is deleted through the FUSE mount (F1). A local
// volume's directory on the node's own disk is deleted too.
func seedNode(t *testing.T) (pid int, root string) {
	t.Helper()
	return seedNodeWith(t, "")
}

// seedNodeWith is seedNode with more set-up (a shell script, $D the node's
// /) run before the node's process starts.
func seedNodeWith(t *testing.T, extra string) (pid int, root string) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "bindfs", "bindfs")
	root = t.TempDir()
	pids := t.TempDir()
	t.Cleanup(func() { killByArg(root + "/srv") })
	vol := root + filepath.Dir(seedMount)
	vd := `{"driverName":"cephfs.csi.ceph.com","specVolID":"pvc-7d1e","volumeHandle":"0001-0024-csi-vol-7d1e"}`
	links := ""
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		if fi, err := os.Lstat("/" + l); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink("/" + l)
			links += fmt.Sprintf("ln -s %s $D/%s\n", target, l)
		}
	}
	node := testenv.NewNode(t, fmt.Sprintf(`D=%s P=%s
mount -t tmpfs seed $D
mkdir -p $D/usr $D/srv/cephfs/volumes/csi/csi-vol-7d1e $D/fuse $D%s $D%s $D/var/log/pods/monitoring_grafana-0_%s
%smount --bind /usr $D/usr
printf '%%s' '%s' > %s/vol_data.json
bindfs -f -o subtype=ceph-fuse $D/srv/cephfs $D/fuse & echo $! > $P/fuse
for i in $(seq 200); do mountpoint -q $D/fuse && break; sleep 0.05; done
mount --bind $D/fuse $D%s
mount --bind $D/fuse/volumes/csi/csi-vol-7d1e $D%s
rm -rf $D/fuse/volumes/csi/csi-vol-7d1e
mkdir -p $D/disk/pvc-local $D%s && mount --bind $D/disk/pvc-local $D%s && rmdir $D/disk/pvc-local
%s
chroot $D /usr/bin/sleep 600 & echo $! > $P/root`, root, pids, seedStaging, seedMount, seedUID, links, vd, vol, seedStaging, seedMount, seedLocal, seedLocal, extra))
	_ = node
	data, err := os.ReadFile(pids + "/root")
	if err != nil {
		t.Fatal(err)
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	testenv.WaitUntil(t, 10*time.Second, "the chrooted node process", func() bool {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
		return l == root
	})
	return pid, root
}

// TestOnceSeedLayoutNoFlags is issue 19's first judged case: with no
// --path.kubelet, the deleted pod volume root of the seed's node is
// critical and names the pod (namespace and name), the volume and the CSI
// driver, because the kubelet root is found from the mount table; and the
// same table captured and read offline is critical with the pod, volume
// and driver too (a table has no namespace to give).
func TestOnceSeedLayoutNoFlags(t *testing.T) {
	pid, root := seedNode(t)
	args := []string{"--once", "--output=json", "--target.pid", strconv.Itoa(pid), "--probe.timeout=500ms", "--once.timeout=3s"}
	r := mountwatchd(t, args...)
	d := decode(t, r)
	f := findingAt(d, seedMount)
	if r.code != 1 || f == nil {
		t.Fatalf("exit %d, no finding at %s:\n%s\n%s", r.code, seedMount, r.stdout, r.stderr)
	}
	want := findingJSON{Check: "deleted_root", Severity: "critical", MountPoint: seedMount, FSType: "fuse.ceph-fuse", Source: root + "/srv/cephfs", // bindfs names its source as it sees it
		Root: "/volumes/csi/csi-vol-7d1e//deleted", PodUID: seedUID, PodNamespace: "monitoring", PodName: "grafana-0",
		Volume: seedVolume, CSIDriver: "cephfs.csi.ceph.com", VolumeHandle: "0001-0024-csi-vol-7d1e"}
	got := *f
	got.Message, got.FirstSeen = "", ""
	if got != want {
		t.Errorf("finding\n got %+v\nwant %+v", got, want)
	}
	if !strings.Contains(f.Message, "pod monitoring/grafana-0 that mount volume dashboard-folder (kubelet's directory name: for a claim, its PersistentVolume) cannot start") {
		t.Errorf("message: %s", f.Message)
	}
	// On local disk: critical too, for a pod volume (it was a warning with
	// no pod named while the root was taken to be /var/lib/kubelet).
	if l := findingAt(d, seedLocal); l == nil || l.Severity != "critical" || l.PodUID != seedUID || l.PodName != "grafana-0" || l.Volume != "pvc-local" {
		t.Errorf("local volume: %+v", l)
	}
	if d.Layout == nil || d.Layout.Kubelet.Path != seedKubelet || d.Layout.Kubelet.Source != "mount table" {
		t.Errorf("layout: %+v", d.Layout)
	}
	text := mountwatchd(t, args[:1+copy(args[1:], args[2:])]...) // the same without --output=json
	if !strings.Contains(text.stdout, "kubelet root         "+seedKubelet+" (mount table: 3 kubelet mounts)") {
		t.Errorf("the text report does not say what was found:\n%s", text.stdout)
	}

	// Offline: the node's table as a support bundle has it.
	table, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(file, table, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{file, "../../internal/mounts/testdata/layout-f1-data-kubernetes.mountinfo"} {
		r = mountwatchd(t, "--mountinfo", file, "--output=json")
		d = decode(t, r)
		f = findingAt(d, seedMount)
		if r.code != 1 || f == nil || f.Severity != "critical" || f.PodUID != seedUID || f.Volume != seedVolume || f.CSIDriver != "cephfs.csi.ceph.com" {
			t.Errorf("offline %s: exit %d, finding %+v", file, r.code, f)
		}
		if d.Layout.Kubelet.Path != seedKubelet || d.Layout.Kubelet.Source != "mount table" {
			t.Errorf("offline layout: %+v", d.Layout.Kubelet)
		}
	}
	// A flag given wins, even when wrong: the default root again.
	d = decode(t, mountwatchd(t, "--mountinfo", file, "--output=json", "--path.kubelet=/var/lib/kubelet"))
	if f = findingAt(d, seedMount); f == nil || f.Severity != "critical" || f.PodUID != "" || d.Layout.Kubelet.Source != "flag" {
		t.Errorf("with --path.kubelet=/var/lib/kubelet: %+v %+v", f, d.Layout.Kubelet)
	}
}

// TestOnceHiddenEntries is issue 19's second judged case, through the
// binary and with no flag (kubelet's root found from the table): a FUSE
// staging mount made over a directory holding a file (bindfs -o nonempty,
// as ceph-fuse restarted with nonempty), and a pod volume whose directory
// received a file before the volume was mounted over it. Each is exactly
// one hidden_entries warning naming the file.
func TestOnceHiddenEntries(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	kubelet := dir + seedKubelet
	stage := kubelet + "/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/0f3a/globalmount"
	vol := testenv.KubeletPodVolume(t, kubelet, seedUID, seedVolume, "cephfs.csi.ceph.com", "vol-1")
	other := testenv.KubeletPodVolume(t, kubelet, "5d6c7b8a-1f2e-4d3c-9b8a-7f6e5d4c3b2a", "cache", "cephfs.csi.ceph.com", "vol-2")
	for _, d := range []string{dir + "/backing/v1", dir + "/backing/v2", stage} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{stage + "/ceph-fuse.client.log", other + "/written-while-unmounted.db"} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Bindfs(t, dir+"/backing", stage, "nonempty", "subtype=ceph-fuse")
	testenv.Bind(t, stage+"/v1", vol)   // published over an empty directory
	testenv.Bind(t, stage+"/v2", other) // published over the pod's own writes

	r := mountwatchd(t, "--once")
	if r.code != 1 || strings.Count(r.stdout, "WARNING hidden_entries ") != 2 ||
		!strings.Contains(r.stdout, "WARNING hidden_entries "+stage) || !strings.Contains(r.stdout, "WARNING hidden_entries "+other) {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	d := decode(t, mountwatchd(t, "--once", "--output=json"))
	names := map[string]string{}
	for _, f := range d.Findings {
		if f.Check == check.HiddenEntries {
			names[f.MountPoint] = f.Details["hidden_names"]
		}
	}
	if len(names) != 2 || names[stage] != `"ceph-fuse.client.log"` || names[other] != `"written-while-unmounted.db"` {
		t.Errorf("hidden_entries findings: %v", names)
	}
}

// TestDaemonHiddenEntries: the daemon exports a hidden_entries problem in
// /metrics and logs it once to a real journald with its own MESSAGE_ID.
func TestDaemonHiddenEntries(t *testing.T) {
	testenv.RequireRoot(t)
	journalDir, _ := testenv.StartJournald(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	vol := testenv.KubeletPodVolume(t, dir+seedKubelet, seedUID, seedVolume, "cephfs.csi.ceph.com", "vol-1")
	if err := os.WriteFile(vol+"/written-while-unmounted.db", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir+"/backing", 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Bindfs(t, dir+"/backing", vol, "nonempty", "subtype=ceph-fuse")
	d := startDaemon(t, nil, "--scan.interval=200ms", "--interval=100ms")
	series := fmt.Sprintf(`mountwatchd_problem{check="hidden_entries",fstype="fuse.ceph-fuse",mountpoint=%q,pod_name="",pod_namespace="",pod_uid=%q,severity="warning"`, vol, seedUID)
	testenv.WaitUntil(t, 20*time.Second, "the problem in /metrics", func() bool {
		v, _ := value(d.metrics(), series)
		return v == 1
	})
	if v, _ := value(d.metrics(), `mountwatchd_layout_info{dir="kubelet_root",path="`+dir+seedKubelet+`",source="mount table"}`); v != 1 {
		t.Errorf("mountwatchd_layout_info does not name the kubelet root found:\n%s", d.metrics())
	}
	var entries []map[string]any
	testenv.WaitUntil(t, 20*time.Second, "the journal entry", func() bool {
		entries = testenv.JournalEntries(t, journalDir, "MESSAGE_ID="+export.MessageIDs[check.HiddenEntries])
		return len(entries) >= 1
	})
	e := entries[0]
	if e["CHECK"] != "hidden_entries" || e["MOUNT_POINT"] != vol || e["PRIORITY"] != "4" || e["EVENT"] != "appeared" || e["VOLUME"] != seedVolume {
		t.Errorf("journal entry: %v", e)
	}
	if l := testenv.JournalEntries(t, journalDir, "MESSAGE=layout found"); len(l) != 1 || l[0]["KUBELET_ROOT"] != dir+seedKubelet || l[0]["KUBELET_ROOT_SOURCE"] != "mount table" {
		t.Errorf("layout log entries: %v", l)
	}
}
