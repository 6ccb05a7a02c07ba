package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// brokenNode is issue 14's stand-in node: a process in its own mount
// namespace with two FUSE servers (bindfs), each bound into a CSI pod
// volume, one killed (SIGKILL: stale) and one stopped (SIGSTOP: hung), and
// a stray trusted.overlay.opaque in an emptyDir. The table settles before
// the servers break, as in production. Issue 19 adds a third FUSE server
// mounted (-o nonempty) over a directory holding a file, on a tmpfs the test's
// namespace mounts too (as a systemd unit's namespace has the host's
// filesystems): hidden_entries reaches it through our own mount of it.
type brokenNode struct {
	node             *testenv.Node
	dir, kubelet     string
	dead, stopped    string // FUSE mount points
	deadVol, hungVol string // pod volumes bound from them
	stray            string
	shared, over     string // a tmpfs of ours and the node's; a FUSE mount over a file in it
}

func newBrokenNode(t *testing.T) *brokenNode {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "bindfs", "bindfs")
	testenv.RequireCommand(t, "setfattr", "attr")
	dir := t.TempDir()
	const uid = "5d6c7b8a-1f2e-4d3c-9b8a-7f6e5d4c3b2a"
	b := &brokenNode{dir: dir, kubelet: dir + "/kubelet", dead: dir + "/fuse-dead", stopped: dir + "/fuse-hung"}
	vols := b.kubelet + "/pods/" + uid + "/volumes"
	b.deadVol, b.hungVol = vols+"/kubernetes.io~csi/pvc-dead/mount", vols+"/kubernetes.io~csi/pvc-hung/mount"
	b.stray = vols + "/kubernetes.io~empty-dir/cache/copied"
	pids := t.TempDir() // outside the node's tmpfs, where the test sees it
	b.shared = t.TempDir()
	b.over = b.shared + "/over"
	testenv.Tmpfs(t, b.shared)
	if err := os.Mkdir(b.over, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.over+"/left-before-remount", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Should setup fail half-way, the servers already started are found
	// by their unique paths and ended (they are not the shell's to end).
	t.Cleanup(func() { killByArg(dir + "/src") })
	b.node = testenv.NewNode(t, fmt.Sprintf(`D=%s P=%s
mount -t tmpfs node-tmpfs $D
mkdir -p $D/src1/a $D/src2/a $D/src3 $D/fuse-dead $D/fuse-hung %s %s %s $D/logs
setfattr -n trusted.overlay.opaque -v y %s
bindfs -f --no-allow-other -o subtype=ceph-fuse $D/src1 $D/fuse-dead & echo $! > $P/pid-dead
bindfs -f --no-allow-other -o subtype=s3fs $D/src2 $D/fuse-hung & echo $! > $P/pid-hung
bindfs -f --no-allow-other -o nonempty,subtype=sshfs $D/src3 %s & echo $! > $P/pid-over
for i in $(seq 200); do mountpoint -q $D/fuse-dead && mountpoint -q $D/fuse-hung && mountpoint -q %s && break; sleep 0.05; done
mountpoint -q $D/fuse-dead && mountpoint -q $D/fuse-hung && mountpoint -q %s
mount --bind $D/fuse-dead/a %s
mount --bind $D/fuse-hung/a %s`, dir, pids, b.deadVol, b.hungVol, b.stray, b.stray, b.over, b.over, b.over, b.deadVol, b.hungVol))
	pid := func(name string) int {
		data, err := os.ReadFile(pids + "/pid-" + name)
		n, err2 := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || err2 != nil {
			t.Fatalf("pid of bindfs %s: %v %v", name, err, err2)
		}
		return n
	}
	// Before the node's shell goes (cleanups run last first): resume and
	// kill the servers, which are not its children's children to kill.
	dead, hung, over := pid("dead"), pid("hung"), pid("over")
	t.Cleanup(func() {
		_ = syscall.Kill(hung, syscall.SIGCONT)
		_ = syscall.Kill(hung, syscall.SIGKILL)
		_ = syscall.Kill(dead, syscall.SIGKILL)
		_ = syscall.Kill(over, syscall.SIGKILL)
	})
	b.node.Run(fmt.Sprintf("kill -KILL %d; wait %d || true; kill -STOP %d", dead, dead, hung))
	return b
}

func (b *brokenNode) args(extra ...string) []string {
	return append([]string{"--once", "--output=json", "--target.pid", strconv.Itoa(b.node.PID), "--path.kubelet", b.kubelet,
		"--path.pod-logs", b.dir + "/logs", "--probe.timeout=500ms", "--once.timeout=3s"}, extra...)
}

// onceAs runs the binary through setpriv with the given options (none: as
// the test runs, root with every capability).
func onceAs(t *testing.T, setprivArgs []string, args []string) (int, export.Document, string) {
	t.Helper()
	bin, argv := binary(t), args
	if setprivArgs != nil {
		bin = testenv.RequireCommand(t, "setpriv", "util-linux")
		argv = append(append(slices.Clone(setprivArgs), binary(t)), args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, argv...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var d export.Document
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("not JSON (exit %d): %v\n%s\n%s", code, err, out, stderr.String())
	}
	return code, d, stderr.String()
}

// The DaemonSet's and the unit's capabilities, by setpriv's names.
var keptCaps = []string{"sys_ptrace", "dac_read_search", "sys_admin"}

// capsOnly is setpriv options that leave root only the given capabilities:
// the bounding set limits what an exec as root gets, the inheritable set is
// emptied so nothing comes back through it.
func capsOnly(caps ...string) []string {
	b := "-all"
	for _, c := range caps {
		b += ",+" + c
	}
	return []string{"--bounding-set=" + b, "--inh-caps=-all"}
}

func without(drop string) []string {
	var out []string
	for _, c := range keptCaps {
		if c != drop {
			out = append(out, c)
		}
	}
	return out
}

// Issue 14's table, re-run on every test: the binary against the broken
// stand-in node with all capabilities, with exactly the DaemonSet's and
// unit's set, and with each of those removed in turn. Each row asserts the
// findings and check errors it must give, and no row reports a mount that is
// not broken: without CAP_SYS_PTRACE the prober cannot open
// /proc/<pid>/root, which is our failure, not four stale mounts.
func TestLeastPrivilegeTable(t *testing.T) {
	b := newBrokenNode(t)
	all := map[string]int{
		"hung_mount " + b.stopped: 1, "hung_mount " + b.hungVol: 1,
		"stale_mount " + b.dead: 1, "stale_mount " + b.deadVol: 1,
		"stray_overlay_xattr " + b.stray: 1,
		"hidden_entries " + b.over:       1,
	}
	noAdmin := map[string]int{}
	for k, v := range all {
		if !strings.HasPrefix(k, "stray_overlay_xattr") && !strings.HasPrefix(k, "hidden_entries") {
			noAdmin[k] = v
		}
	}
	type row struct {
		name     string
		setpriv  []string
		code     int
		findings map[string]int    // "check path" -> count, only under the node's dir
		errors   map[string]string // check -> text its error must contain
		skipped  map[string]string // check -> text its reason must contain
	}
	rows := []row{
		{"all (root)", nil, 1, all, nil, nil},
		{"SYS_PTRACE, DAC_READ_SEARCH, SYS_ADMIN (the DaemonSet's set)", capsOnly(keptCaps...), 1, all, nil, nil},
		// hidden_entries reads our own namespace, not /proc/<pid>/root.
		{"without SYS_PTRACE", capsOnly(without("sys_ptrace")...), 1, map[string]int{"hidden_entries " + b.over: 1},
			map[string]string{"stale_mount": "CAP_SYS_PTRACE", "hung_mount": "CAP_SYS_PTRACE",
				"opaque_propagation": "CAP_SYS_PTRACE", "stray_overlay_xattr": "CAP_SYS_PTRACE", "unmounted_volume": "CAP_SYS_PTRACE"}, nil},
		{"without SYS_ADMIN", capsOnly(without("sys_admin")...), 1, noAdmin, nil,
			map[string]string{"stray_overlay_xattr": "invisible without CAP_SYS_ADMIN", "hidden_entries": "needs CAP_SYS_ADMIN to clone a mount"}},
		{"without DAC_READ_SEARCH", capsOnly(without("dac_read_search")...), 1, all, nil, nil},
	}
	for _, r := range rows {
		code, d, stderr := onceAs(t, r.setpriv, b.args())
		got := map[string]int{}
		for _, f := range d.Findings {
			p := f.MountPoint
			if f.Path != "" {
				p = f.Path
			}
			if strings.HasPrefix(p, b.dir+"/") || strings.HasPrefix(p, b.shared+"/") {
				got[string(f.Check)+" "+p]++
				if f.Check == "stale_mount" && f.Severity != "critical" {
					t.Errorf("%s: %s %s is %s, want critical (a dead server, not our EACCES)", r.name, f.Check, p, f.Severity)
				}
			}
		}
		var report []string
		for _, c := range d.Checks {
			line := fmt.Sprintf("%s=%s", c.Check, c.Status)
			if c.Error != "" {
				line += " (" + c.Error + ")"
			}
			if c.Reason != "" {
				line += " [" + c.Reason + "]"
			}
			report = append(report, line)
			want, wantErr := r.errors[string(c.Check)]
			reason, wantSkip := r.skipped[string(c.Check)]
			switch {
			case wantErr && (c.Status != "error" || !strings.Contains(c.Error, want)):
				t.Errorf("%s: %s is %s %q, want an error naming %s", r.name, c.Check, c.Status, c.Error, want)
			case wantSkip && (c.Status != "skipped" || !strings.Contains(c.Reason, reason)):
				t.Errorf("%s: %s is %s %q, want skipped: %s", r.name, c.Check, c.Status, c.Reason, reason)
			case !wantErr && !wantSkip && c.Status != "ok" && c.Status != "problems":
				t.Errorf("%s: %s is %s %q %q", r.name, c.Check, c.Status, c.Error, c.Reason)
			}
		}
		if code != r.code || !mapsEqual(got, r.findings) {
			t.Errorf("%s: exit %d, findings %v; want exit %d, findings %v\n%s", r.name, code, got, r.code, r.findings, stderr)
		}
		t.Logf("| %s | exit %d | %v | %s |", r.name, code, countKeys(got), strings.Join(report, ", "))
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func countKeys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// killByArg resumes and kills every process with an argument starting with
// prefix (a test's unique temp dir).
func killByArg(prefix string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		for _, a := range strings.Split(string(data), "\x00") {
			if strings.HasPrefix(a, prefix) {
				_ = syscall.Kill(pid, syscall.SIGCONT)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
}

// README's first command as an ordinary user (nobody, no capabilities):
// reading our own table needs no root, and the checks that cannot see
// trusted.* xattrs are skipped with the reason, so a healthy machine exits
// 0 rather than "UNKNOWN: ... stray_overlay_xattr failed".
func TestOnceAsOrdinaryUser(t *testing.T) {
	testenv.RequireRoot(t)
	setpriv := testenv.RequireCommand(t, "setpriv", "util-linux")
	dir, err := os.MkdirTemp("", "mountwatchd-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	bin := dir + "/mountwatchd"
	data, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		"--bounding-set=-all", bin, "--once")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	first, _, _ := strings.Cut(string(out), "\n")
	if err != nil || !strings.HasPrefix(first, "OK: ") {
		t.Errorf("as nobody: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "overlay") && !strings.Contains(first, "skipped (no CAP_SYS_ADMIN)") {
		t.Errorf("overlay checks ran without CAP_SYS_ADMIN and the summary does not say they were skipped:\n%s", out)
	}
	t.Logf("as nobody: %s", first)
}
