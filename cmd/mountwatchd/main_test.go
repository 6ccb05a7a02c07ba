package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// TestMain runs the tests in a private mount namespace, and gives the
// binaries they run a state directory of their own (probes left stuck),
// not the host's /run/mountwatchd. Started as a probe helper (by a test
// or benchmark that calls run in this process), it is one, as main is.
func TestMain(m *testing.M) {
	if isProbeHelper() {
		os.Exit(probe.ServeHelper(os.Stdin, os.Stdout))
	}
	if os.Getenv("RUNTIME_DIRECTORY") == "" {
		if dir, err := os.MkdirTemp("", "mountwatchd-state"); err == nil {
			os.Setenv("RUNTIME_DIRECTORY", dir)
		}
	}
	testenv.Main(m)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds mountwatchd once per test run: the exit codes and output
// are those of the real program.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mountwatchd-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "mountwatchd")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v", buildErr)
	}
	return binPath
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) firstLine() string { return strings.SplitN(r.stdout, "\n", 2)[0] }

func mountwatchd(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("mountwatchd %v did not return within 60s", args)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	r := result{code, stdout.String(), stderr.String()}
	if len(r.firstLine()) > export.SummaryMax {
		t.Errorf("first line is %d bytes, more than %d: %q", len(r.firstLine()), export.SummaryMax, r.firstLine())
	}
	return r
}

func decode(t *testing.T, r result) export.Document {
	t.Helper()
	var d export.Document
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("--output json is not JSON: %v\n%s", err, r.stdout)
	}
	if d.SchemaVersion != export.SchemaVersion || d.Findings == nil || d.Checks == nil {
		t.Errorf("document lacks schema_version, findings or checks: %s", r.stdout)
	}
	return d
}

func findingAt(d export.Document, mountpoint string) (f *findingJSON) {
	for i := range d.Findings {
		if d.Findings[i].MountPoint == mountpoint {
			b, _ := json.Marshal(d.Findings[i])
			f = &findingJSON{}
			_ = json.Unmarshal(b, f)
			return f
		}
	}
	return nil
}

// findingJSON is a finding as a script sees it: the documented field names.
type findingJSON struct {
	Check        string `json:"check"`
	Severity     string `json:"severity"`
	MountPoint   string `json:"mountpoint"`
	FSType       string `json:"fstype"`
	Source       string `json:"source"`
	Root         string `json:"root"`
	Message      string `json:"message"`
	PodUID       string `json:"pod_uid"`
	PodNamespace string `json:"pod_namespace"`
	PodName      string `json:"pod_name"`
	Volume       string `json:"volume"`
	CSIDriver    string `json:"csi_driver"`
	VolumeHandle string `json:"volume_handle"`
	FirstSeen    string `json:"first_seen"`
}

// A tmpfs bind mount whose source directory is deleted: warning, exit 1.
func TestOnceDeletedTmpfsBind(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir+"/t")
	if err := os.Mkdir(dir+"/t/src", 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Bind(t, dir+"/t/src", dir+"/bind")
	if err := os.Remove(dir + "/t/src"); err != nil {
		t.Fatal(err)
	}

	r := mountwatchd(t, "--once")
	if r.code != 1 || !strings.Contains(r.stdout, "WARNING deleted_root "+dir+"/bind") {
		t.Fatalf("exit %d, want 1 with the finding:\n%s%s", r.code, r.stdout, r.stderr)
	}
	d := decode(t, mountwatchd(t, "--once", "--output", "json"))
	f := findingAt(d, dir+"/bind")
	if f == nil || f.Check != "deleted_root" || f.Severity != "warning" || f.Root != "/src//deleted" || f.FSType != "tmpfs" {
		t.Fatalf("JSON finding: %+v", f)
	}
}

// The brief's F1 on a real FUSE mount: a directory of a ceph-fuse-typed
// bindfs mount, bind-mounted as a CSI pod volume, deleted through the FUSE
// mount. The finding names the pod, the volume and the CSI driver.
func TestOnceDeletedFUSEPodVolume(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	kubelet, logs := dir+"/var/lib/kubelet", dir+"/var/log/pods"
	const uid = "0d5f7a8e-4b1c-4e7e-9a63-3c2a1f0e9b11"
	if err := os.MkdirAll(dir+"/backing/volumes/csi/vol2", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(logs+"/shop_web-0_"+uid, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Bindfs(t, dir+"/backing", dir+"/cephfs", "subtype=ceph-fuse")
	mnt := testenv.KubeletPodVolume(t, kubelet, uid, "pvc-1", "cephfs.csi.ceph.com", "0001-0011-vol2")
	testenv.Bind(t, dir+"/cephfs/volumes/csi/vol2", mnt)
	if err := os.RemoveAll(dir + "/cephfs/volumes/csi/vol2"); err != nil {
		t.Fatal(err)
	}

	flags := []string{"--once", "--path.kubelet", kubelet, "--path.pod-logs", logs}
	r := mountwatchd(t, flags...)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1:\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"CRITICAL deleted_root " + mnt, "pod shop/web-0", "volume pvc-1", "driver cephfs.csi.ceph.com", "ENOENT"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text report lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.HasPrefix(r.firstLine(), "1 mount problem (1 critical): deleted_root ") {
		t.Errorf("summary %q", r.firstLine())
	}

	d := decode(t, mountwatchd(t, append(flags, "--output=json")...))
	f := findingAt(d, mnt)
	if f == nil {
		t.Fatalf("no JSON finding for %s:\n%+v", mnt, d.Findings)
	}
	want := findingJSON{Check: "deleted_root", Severity: "critical", MountPoint: mnt, FSType: "fuse.ceph-fuse",
		Source: dir + "/backing", Root: "/volumes/csi/vol2//deleted", PodUID: uid, PodNamespace: "shop", PodName: "web-0",
		Volume: "pvc-1", CSIDriver: "cephfs.csi.ceph.com", VolumeHandle: "0001-0011-vol2"}
	got := *f
	got.Message, got.FirstSeen = "", ""
	if got != want {
		t.Errorf("JSON finding\n got %+v\nwant %+v", got, want)
	}
	if d.Status != "problems" || f.FirstSeen == "" {
		t.Errorf("status %q first_seen %q", d.Status, f.FirstSeen)
	}
}

// The DaemonSet case: the broken mount and the kubelet tree live only in
// another process's mount namespace. --target.pid finds them through
// /proc/<pid>/root; the check of our own namespace does not see them.
func TestOnceOtherMountNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	const uid = "11111111-2222-3333-4444-555555555555"
	kubelet := dir + "/var/lib/kubelet"
	vol := kubelet + "/pods/" + uid + "/volumes/kubernetes.io~csi/pvc-7"
	node := testenv.NewNode(t, strings.Join([]string{
		"mount -t tmpfs node-tmpfs " + dir,
		"mkdir -p " + dir + "/data/gone " + vol + "/mount " + dir + "/var/log/pods/prod_db-1_" + uid,
		`printf '{"driverName":"nfs.csi.k8s.io","volumeHandle":"h7"}' > ` + vol + "/vol_data.json",
		"mount --bind " + dir + "/data/gone " + vol + "/mount",
		"rmdir " + dir + "/data/gone",
	}, "\n"))

	pid := node.PID
	r := mountwatchd(t, "--once", "--output=json", "--target.pid", strconv.Itoa(pid), "--path.kubelet", kubelet,
		"--path.pod-logs", dir+"/var/log/pods")
	if r.code != 1 {
		t.Fatalf("target pid %d: exit %d, want 1:\n%s%s", pid, r.code, r.stdout, r.stderr)
	}
	d := decode(t, r)
	f := findingAt(d, vol+"/mount")
	if f == nil || f.Severity != "critical" || f.PodName != "db-1" || f.PodNamespace != "prod" || f.CSIDriver != "nfs.csi.k8s.io" {
		t.Fatalf("finding in the other namespace: %+v", f)
	}
	if d.MountTable == nil || d.MountTable.Source != "/proc/"+strconv.Itoa(pid)+"/mountinfo" || d.MountTable.PID != pid {
		t.Errorf("mount_table %+v", d.MountTable)
	}

	own := decode(t, mountwatchd(t, "--once", "--output=json", "--path.kubelet", kubelet))
	if f := findingAt(own, vol+"/mount"); f != nil {
		t.Errorf("our own namespace reports the other namespace's mount: %+v", f)
	}
}

// A healthy table exits 0, live (a procfs whose self/mountinfo is a real
// healthy capture) and from a captured file.
func TestOnceHealthy(t *testing.T) {
	procfs := t.TempDir()
	if err := os.MkdirAll(procfs+"/self", 0o755); err != nil {
		t.Fatal(err)
	}
	table, err := os.ReadFile("../../internal/mounts/testdata/host-vm-6.18.mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(procfs+"/self/mountinfo", table, 0o644); err != nil {
		t.Fatal(err)
	}
	r := mountwatchd(t, "--once", "--path.procfs", procfs)
	if r.code != 0 || r.firstLine() != "OK: 20 mounts checked, no problems" {
		t.Errorf("live healthy: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = mountwatchd(t, "--mountinfo", procfs+"/self/mountinfo", "--output", "json")
	d := decode(t, r)
	if r.code != 0 || d.Status != "ok" || len(d.Findings) != 0 || d.MountTable.Live {
		t.Errorf("offline healthy: exit %d\n%s", r.code, r.stdout)
	}
}

// The table cannot be read: exit 2, naming the path and the error, in text
// and in JSON.
func TestOnceUnreadableTable(t *testing.T) {
	r := mountwatchd(t, "--once", "--target.pid", "999999999")
	if r.code != 2 || !strings.Contains(r.stdout, "/proc/999999999/mountinfo") || !strings.Contains(r.stdout, "no such file or directory") {
		t.Errorf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.HasPrefix(r.firstLine(), "UNKNOWN: could not check") {
		t.Errorf("summary %q", r.firstLine())
	}
	r = mountwatchd(t, "--mountinfo", "/nonexistent/mountinfo", "--output", "json")
	d := decode(t, r)
	if r.code != 2 || d.Status != "error" || !strings.Contains(d.Error, "/nonexistent/mountinfo") {
		t.Errorf("exit %d:\n%s", r.code, r.stdout)
	}
	r = mountwatchd(t, "--mountinfo", t.TempDir())
	if r.code != 2 || !strings.Contains(r.stdout, "is a directory") {
		t.Errorf("directory as table: exit %d:\n%s", r.code, r.stdout)
	}
}

// A malformed line is reported with its line number; the deleted mount on
// the next line is still found. Offline mode lists no live checks as run.
func TestOnceMalformedLine(t *testing.T) {
	file := filepath.Join(t.TempDir(), "mountinfo")
	table := "22 1 259:1 / / rw - ext4 /dev/vda rw\n" +
		"23 22 0:39 garbage\n" +
		"65 22 0:40 /vols/v2//deleted /var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount rw - fuse.ceph-fuse ceph-fuse rw\n"
	if err := os.WriteFile(file, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	r := mountwatchd(t, "--mountinfo", file)
	if r.code != 1 || !strings.Contains(r.stdout, "line 2: ") || !strings.Contains(r.stdout, "CRITICAL deleted_root /var/lib/kubelet/pods/u1") {
		t.Errorf("exit %d:\n%s", r.code, r.stdout)
	}
	d := decode(t, mountwatchd(t, "--mountinfo", file, "--output=json"))
	if len(d.ParseErrors) != 1 || d.ParseErrors[0].Line != 2 || len(d.Findings) != 1 {
		t.Errorf("parse_errors %+v findings %d", d.ParseErrors, len(d.Findings))
	}
}

func TestHelpVersionAndBadFlags(t *testing.T) {
	r := mountwatchd(t, "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "--once") || !strings.Contains(r.stdout, "--target.pid") {
		t.Errorf("--help: exit %d\n%s", r.code, r.stdout)
	}
	r = mountwatchd(t, "--version")
	if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "mountwatchd, version") {
		t.Errorf("--version: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = mountwatchd(t, "--once", "--output", "yaml")
	if r.code != 2 || !strings.Contains(r.stderr, "yaml") {
		t.Errorf("bad --output: exit %d\n%s", r.code, r.stderr)
	}
}

// --once with a hung FUSE mount returns by its deadline with exit 1 and the
// hung finding; it never waits for the blocked probe.
func TestOnceHungFUSEReturns(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/src/a", 0o755); err != nil {
		t.Fatal(err)
	}
	server := testenv.Bindfs(t, dir+"/src", dir+"/fuse", "subtype=gcsfuse")
	testenv.Bind(t, dir+"/fuse/a", dir+"/bind")
	if err := server.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Signal(syscall.SIGCONT) })

	r := mountwatchd(t, "--once", "--output=json", "--probe.timeout=500ms", "--probe.mount-fusectl")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1:\n%s%s", r.code, r.stdout, r.stderr)
	}
	d := decode(t, r)
	for _, mp := range []string{dir + "/fuse", dir + "/bind"} {
		if f := findingAt(d, mp); f == nil || f.Check != "hung_mount" || f.Severity != "critical" {
			t.Errorf("%s: %+v", mp, f)
		}
	}
	if d.Probe == nil || d.Probe.Blocked != 1 || d.Probe.Timeouts != 1 {
		t.Errorf("probe stats %+v, want 1 blocked probe and 1 timeout", d.Probe)
	}

	// The same node once the server answers again: healthy. The first
	// run's probe, stuck until now, is recorded in the state directory and
	// trusted while its thread lives; it lives on for a moment after the
	// answer (longer on a loaded machine), so wait until it has gone before
	// the next run asks (the record itself is what the next run must not
	// trust once its probe returned).
	if err := server.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitStuckProbesGone(t, os.Getenv("RUNTIME_DIRECTORY"))
	if r := mountwatchd(t, "--once", "--probe.timeout=3s"); r.code != 0 { // generous, within --once.timeout
		t.Errorf("after SIGCONT: exit %d\n%s", r.code, r.stdout)
	}
}

// waitStuckProbesGone waits until every probe recorded as stuck in the
// state directory dir has returned: its thread (or, when not known, its
// helper process) is gone.
func waitStuckProbesGone(t *testing.T, dir string) {
	t.Helper()
	records, _ := filepath.Glob(filepath.Join(dir, "stuck-*.json"))
	for _, rec := range records {
		data, err := os.ReadFile(rec)
		if err != nil {
			continue
		}
		var r struct {
			PID int `json:"pid"`
			TID int `json:"tid"`
		}
		if json.Unmarshal(data, &r) != nil || r.PID <= 0 {
			continue
		}
		p := fmt.Sprintf("/proc/%d", r.PID)
		if r.TID > 0 {
			p = fmt.Sprintf("/proc/%d/task/%d", r.PID, r.TID)
		}
		testenv.WaitUntil(t, 10*time.Second, "the stuck probe recorded in "+rec+" to return", func() bool {
			_, err := os.Stat(p)
			return err != nil
		})
	}
}

// A killed FUSE server: --once reports every mount of the connection stale
// with the errno.
func TestOnceStaleFUSE(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/src/a", 0o755); err != nil {
		t.Fatal(err)
	}
	server := testenv.Bindfs(t, dir+"/src", dir+"/fuse", "subtype=s3fs")
	testenv.Bind(t, dir+"/fuse/a", dir+"/bind")
	if err := server.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = server.Wait()
	r := mountwatchd(t, "--once")
	if r.code != 1 || !strings.Contains(r.stdout, "CRITICAL stale_mount "+dir+"/bind") || !strings.Contains(r.stdout, "errno: ENOTCONN") {
		t.Errorf("exit %d:\n%s", r.code, r.stdout)
	}
}

// F5 and F6 through --once: a layer chain with the propagated opaque marker
// shape mounted as a containerd task rootfs with relative lowerdirs, and a stray
// overlay xattr in a pod's emptyDir volume. Both are reported with the
// container, pod and volume; the full scan pass is complete.
func TestOnceOverlayXattrChecks(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	snap := dir + "/containerd/snapshots"
	rootfs := dir + "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c0ffee/rootfs"
	const uid = "9e8d7c6b-5a49-4382-b1a0-ffeeddccbbaa"
	vol := dir + "/kubelet/pods/" + uid + "/volumes/kubernetes.io~empty-dir/layers"
	for _, d := range []string{snap + "/1/fs/func/min", snap + "/2/fs/func/max", snap + "/3/fs/func", rootfs,
		vol + "/copied/func", dir + "/logs/ci_builder-0_" + uid} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{snap + "/2/fs/func", snap + "/3/fs/func", vol + "/copied/func"} {
		testenv.Run(t, "setfattr", "-n", "trusted.overlay.opaque", "-v", "y", p)
	}
	mnt := exec.Command("mount", "-t", "overlay", "overlay", "-o", "lowerdir=3/fs:2/fs:1/fs", rootfs)
	mnt.Dir = snap
	if out, err := mnt.CombinedOutput(); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	t.Cleanup(func() { testenv.Run(t, "umount", "-l", rootfs) })

	args := []string{"--once", "--path.kubelet", dir + "/kubelet", "--path.pod-logs", dir + "/logs",
		"--path.containerd-snapshots", snap, "--scan.rate=0"}
	r := mountwatchd(t, append(args[:len(args):len(args)], "--output=json")...)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1:\n%s%s", r.code, r.stdout, r.stderr)
	}
	d := decode(t, r)
	var opaque, stray map[string]any
	for _, f := range d.Findings {
		b, _ := json.Marshal(f)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		switch m["check"] {
		case "opaque_propagation":
			opaque = m
		case "stray_overlay_xattr":
			stray = m
		}
	}
	// Laid out like containerd's, but no containerd wrote it: the marker
	// cannot be verified against an image layer, so a warning
	// (TestOnceOpaqueRealContainerd has the verified cases).
	if opaque == nil || opaque["mountpoint"] != rootfs || opaque["severity"] != "warning" || opaque["path"] != "/func" {
		t.Errorf("opaque_propagation finding: %v", opaque)
	} else if det := opaque["details"].(map[string]any); det["container"] != "c0ffee" || det["hidden_entries"] != "1" ||
		det["verification"] != "unverified" {
		t.Errorf("opaque_propagation details: %v", det)
	}
	if stray == nil || stray["path"] != vol+"/copied/func" || stray["pod_name"] != "builder-0" || stray["volume"] != "layers" {
		t.Errorf("stray_overlay_xattr finding: %v", stray)
	}
	for _, c := range d.Checks {
		if (c.Check == "opaque_propagation" || c.Check == "stray_overlay_xattr") && c.Status != "problems" {
			t.Errorf("check %s: %s %s", c.Check, c.Status, c.Error)
		}
	}

	// A once-budget too small for the pass: the findings found so far and an
	// error that says which flag to raise.
	r = mountwatchd(t, append(args[:len(args):len(args)], "--scan.once-budget=1")...)
	if !strings.Contains(r.stdout, "--scan.once-budget") {
		t.Errorf("budget too small: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = mountwatchd(t, "--once", "--scan.budget=-1")
	if r.code != 2 || !strings.Contains(r.stderr, "must not be negative") {
		t.Errorf("negative budget: exit %d %s", r.code, r.stderr)
	}
}

// Without CAP_SYS_ADMIN the kernel hides trusted.* xattrs without an error:
// a stray trusted.overlay.opaque is then invisible, and --once must say the
// check was skipped and why rather than call the node plainly healthy; the
// exit code follows the checks that ran (0 here), so an ordinary user's
// run of the README's first command works.
func TestOnceWithoutCapSysAdminSaysSo(t *testing.T) {
	testenv.RequireRoot(t)
	setpriv := testenv.RequireCommand(t, "setpriv", "util-linux")
	dir := t.TempDir()
	vol := dir + "/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache/copied"
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "setfattr", "-n", "trusted.overlay.opaque", "-v", "y", vol)
	args := []string{"--once", "--path.kubelet", dir + "/kubelet", "--scan.rate=0"}

	if r := mountwatchd(t, args...); r.code != 1 || !strings.Contains(r.stdout, "stray_overlay_xattr") {
		t.Fatalf("with CAP_SYS_ADMIN: exit %d\n%s", r.code, r.stdout)
	}
	cmd := exec.Command(setpriv, append([]string{"--inh-caps=-sys_admin", "--bounding-set=-sys_admin", binary(t)}, args...)...)
	out, err := cmd.Output()
	first, _, _ := strings.Cut(string(out), "\n")
	if err != nil || !strings.HasPrefix(first, "OK: ") || !strings.HasSuffix(first, "; 1 check skipped (no CAP_SYS_ADMIN)") ||
		!strings.Contains(string(out), "stray_overlay_xattr  skipped: trusted.overlay.* xattrs are invisible without CAP_SYS_ADMIN") {
		t.Errorf("without CAP_SYS_ADMIN: %v, want exit 0 and the skip in the summary and the report\n%s", err, out)
	}
}

// Malformed and conflicting flags fail with exit 2 and the flag's name;
// kingpin's IntVar took "1.5" as PID 1 and "1e3" as PID 1000.
func TestFlagErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--once", "--target.pid", "abc"}, `--target.pid="abc": want a whole number`},
		{[]string{"--once", "--target.pid", "1.5"}, `--target.pid="1.5": want a whole number`},
		{[]string{"--once", "--target.pid=1e3"}, `--target.pid="1e3": want a whole number`},
		{[]string{"--once", "--target.pid=-3"}, `--target.pid=-3`},
		{[]string{"--once", "--probe.max-blocked=2.5"}, `--probe.max-blocked="2.5"`},
		{[]string{"--once", "--scan.once-budget=1e6"}, `--scan.once-budget="1e6"`},
		{[]string{"--metrics.max-problem-series=ten"}, `--metrics.max-problem-series="ten"`},
		{[]string{"--mountinfo", "/proc/self/mountinfo", "--target.pid", "1"}, "--mountinfo and --target.pid"},
		{[]string{"--target.pid=0", "--mountinfo=-"}, "--mountinfo and --target.pid"},
		{[]string{"--mountinfo="}, "--mountinfo: empty value"},
		{[]string{"--once", "--log.format=xml"}, "--log.format"},
		// The daemon's --kube.* settings, refused at start like the rest.
		{[]string{"--kube.events", "--kube.node-name="}, "--kube.node-name (or $NODE_NAME) is needed"},
		{[]string{"--kube.taint", "--kube.node-name=n", "--kube.timeout=0s"}, "--kube.timeout=0s: must be positive"},
		{[]string{"--kube.events", "--kube.node-name=n", "--kube.event-queue=1e3"}, `--kube.event-queue="1e3": want a whole number`},
	} {
		r := mountwatchd(t, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

// "--mountinfo -" reads the table from standard input, with or without
// --once; kingpin dropped the lone "-" and the live system was checked (or
// the daemon started).
func TestMountinfoStdin(t *testing.T) {
	table := "22 1 259:1 / / rw - ext4 /dev/vda rw\n" +
		"65 22 0:40 /vols/v2//deleted /var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount rw - fuse.ceph-fuse ceph-fuse rw\n"
	for _, args := range [][]string{{"--mountinfo", "-"}, {"--mountinfo=-", "--once"}, {"--once", "--mountinfo", "-", "--output", "json"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, binary(t), args...)
		cmd.Stdin = strings.NewReader(table)
		out, err := cmd.Output()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount") {
			t.Errorf("%q: %v\n%s", args, err, out)
		}
		if !strings.Contains(string(out), "(captured file)") && !strings.Contains(string(out), `"live": false`) {
			t.Errorf("%q checked the live system:\n%s", args, out)
		}
	}
}

// --log.format=logfmt writes key=value lines on stderr (node_exporter's
// format), console still works.
func TestLogFormatLogfmt(t *testing.T) {
	file := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(file, []byte("22 1 259:1 / / rw - ext4 /dev/vda rw\n23 22 0:39 garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := mountwatchd(t, "--mountinfo", file, "--log.format", "logfmt")
	if !strings.Contains(r.stderr, `level=warn msg="mount table line not parsed"`) || !strings.Contains(r.stderr, " line=2 ") {
		t.Errorf("logfmt: exit %d, stderr %q", r.code, r.stderr)
	}
	r = mountwatchd(t, "--mountinfo", file, "--log.format", "console")
	if !strings.Contains(r.stderr, "mount table line not parsed") || strings.Contains(r.stderr, "level=") {
		t.Errorf("console: exit %d, stderr %q", r.code, r.stderr)
	}
}

// bigVolume makes a pod volume of dirs*files empty files under a kubelet
// root in a temp dir and returns the kubelet root.
func bigVolume(t *testing.T, dirs, files int) string {
	t.Helper()
	kubelet := filepath.Join(t.TempDir(), "kubelet")
	vol := filepath.Join(kubelet, "pods/u1/volumes/kubernetes.io~empty-dir/cache")
	for d := range dirs {
		dir := filepath.Join(vol, strconv.Itoa(d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range files {
			fd, err := syscall.Open(filepath.Join(dir, strconv.Itoa(f)), syscall.O_CREAT|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			syscall.Close(fd)
		}
	}
	return kubelet
}

// --once keeps to its time budget (--once.timeout, 4s by default, below
// node-problem-detector's default plugin timeout of 5s): the scan is not
// rate limited unless --scan.rate is given, and a scan the budget cuts short
// is a check error naming --once.timeout (exit 2), not a healthy node. With
// the daemon's 20,000 entries/s, 200,000 entries took 10 s.
func TestOnceTimeBudget(t *testing.T) {
	kubelet := bigVolume(t, 200, 1000)
	start := time.Now()
	r := mountwatchd(t, "--once", "--path.kubelet", kubelet, "--output=json")
	took := time.Since(start)
	d := decode(t, r)
	if took > 5*time.Second {
		t.Errorf("--once took %s over a 200,000-entry volume, past node-problem-detector's 5s", took)
	}
	var stray string
	for _, c := range d.Checks {
		if c.Check == "stray_overlay_xattr" {
			stray = string(c.Status) + " " + c.Error
		}
	}
	switch {
	case r.code == 0 && strings.HasPrefix(stray, "ok"): // finished within the budget
	case r.code == 2 && strings.Contains(stray, "--once.timeout"): // a slow machine: said so
	default:
		t.Errorf("exit %d, stray_overlay_xattr %q after %s", r.code, stray, took)
	}

	// A budget the scan cannot meet: cut short, said so, exit 2, on time.
	start = time.Now()
	r = mountwatchd(t, "--once", "--path.kubelet", kubelet, "--once.timeout=300ms")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("--once.timeout=300ms took %s", took)
	}
	if r.code != 2 || !strings.Contains(r.stdout, "scan stopped: --once.timeout reached (300ms)") {
		t.Errorf("exit %d\n%s", r.code, r.stdout)
	}
	// --scan.rate given is kept: 100 entries/s cannot finish in 300ms.
	r = mountwatchd(t, "--once", "--path.kubelet", kubelet, "--once.timeout=1s", "--scan.rate=100")
	if r.code != 2 || !strings.Contains(r.stdout, "--once.timeout reached") {
		t.Errorf("--scan.rate=100: exit %d\n%s", r.code, r.stdout)
	}
	r = mountwatchd(t, "--once", "--once.timeout=1s", "--probe.timeout=2s")
	if r.code != 2 || !strings.Contains(r.stderr, "--probe.timeout=2s must be shorter than --once.timeout=1s") {
		t.Errorf("probe timeout past the budget: exit %d %s", r.code, r.stderr)
	}
}

// Bad tables are bounded: /dev/zero is refused at --mountinfo.max-bytes
// (it read for ever and grew to gigabytes), a binary file's parse errors
// are listed up to a cap and then counted (76,689 were all printed: 35 MB),
// and an empty table is an error, not "OK: 0 mounts checked".
func TestOnceBoundedInput(t *testing.T) {
	r := mountwatchd(t, "--mountinfo", "/dev/zero", "--mountinfo.max-bytes=1MiB")
	if r.code != 2 || !strings.Contains(r.stdout, "mount table too large: more than 1048576 bytes (--mountinfo.max-bytes)") {
		t.Errorf("/dev/zero: exit %d\n%s", r.code, r.stdout)
	}
	// Reading 64 MiB takes 0.5 s, but up to 4 s in a -race build on a busy
	// machine: a long budget, so the cap and not --once.timeout ends it.
	r = mountwatchd(t, "--mountinfo", "/dev/zero", "--once.timeout=50s")
	if r.code != 2 || !strings.Contains(r.stdout, "more than 67108864 bytes") {
		t.Errorf("/dev/zero, default limit: exit %d\n%.300s", r.code, r.stdout)
	}
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("22 1 259:1 / / rw - ext4 /dev/vda rw\n")
	for i := range 5000 {
		fmt.Fprintf(&b, "garbage line %d \x00\xff\n", i)
	}
	if err := os.WriteFile(dir+"/binary", []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r = mountwatchd(t, "--mountinfo", dir+"/binary")
	if r.code != 2 || !strings.Contains(r.stdout, "... and 4900 more lines not parsed (the first 100 are listed)") ||
		!strings.HasPrefix(r.firstLine(), "UNKNOWN: no problems in 1 mount, but 5000 unparsable lines") {
		t.Errorf("5000 bad lines: exit %d\n%.2000s", r.code, r.stdout)
	}
	if n := strings.Count(r.stdout, "\n"); n > 150 {
		t.Errorf("5000 bad lines gave %d lines of report", n)
	}
	if n := strings.Count(r.stderr, "\n"); n > 110 || !strings.Contains(r.stderr, `"more":4900`) {
		t.Errorf("5000 bad lines gave %d lines of warnings:\n%.500s", n, r.stderr)
	}
	d := decode(t, mountwatchd(t, "--mountinfo", dir+"/binary", "--output=json"))
	if len(d.ParseErrors) != 100 || d.ParseErrorsTotal != 5000 {
		t.Errorf("JSON lists %d parse errors of %d", len(d.ParseErrors), d.ParseErrorsTotal)
	}
	for _, empty := range []string{"/dev/null", dir + "/binary-only"} {
		if err := os.WriteFile(dir+"/binary-only", []byte("garbage\n\x00\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r = mountwatchd(t, "--mountinfo", empty)
		if r.code != 2 || !strings.Contains(r.stdout, "mount table has no mounts") {
			t.Errorf("%s: exit %d\n%s", empty, r.code, r.stdout)
		}
	}
	r = mountwatchd(t, "--once", "--mountinfo.max-bytes=0")
	if r.code != 2 || !strings.Contains(r.stderr, "--mountinfo.max-bytes") {
		t.Errorf("--mountinfo.max-bytes=0: exit %d %s", r.code, r.stderr)
	}
}
