package packaging

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// machine is this machine's own systemd booted as PID 1 by systemd-nspawn
// over an overlay of / (the lower layer is the root filesystem only, not
// the mounts on it), with a tmpfs as upper layer: whatever the booted
// system writes (dpkg -i, the journal) lands in memory and vanishes with
// the test binary's private mount namespace.
type machine struct {
	t *testing.T
	// root is the booted system's root as the test sees it (the overlay).
	root string
	// pid1 is the booted system's PID 1 (systemd), as the test sees it.
	pid1    int
	nspawn  *exec.Cmd
	console *testenv.SyncBuffer
	exited  chan struct{}
	pidNS   string // the booted system's PID namespace, for the leftover check
}

// bootMachine boots the machine and waits until systemd says the boot is
// over. Everything it started is killed by PID when the test ends, the
// cgroups nspawn made are removed, and nothing is left on the host.
func bootMachine(t *testing.T) *machine {
	t.Helper()
	testenv.RequireRoot(t)
	nspawn := testenv.RequireCommand(t, "systemd-nspawn", "systemd-container")
	testenv.RequireCommand(t, "nsenter", "util-linux")
	_, err := os.Stat("/run/systemd")
	testenv.Require(t, err == nil, "/run/systemd (this machine's systemd)")

	work := t.TempDir()
	testenv.Tmpfs(t, work)
	up, wk, root := filepath.Join(work, "u"), filepath.Join(work, "w"), filepath.Join(work, "r")
	for _, d := range []string{up, wk, root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Mount(t, "overlay", root, "overlay", 0, "lowerdir=/,upperdir="+up+",workdir="+wk)
	// nspawn keeps a lock and a propagation directory under
	// /run/systemd/nspawn: a tmpfs there keeps them off the host.
	hideOnHost(t, "/run/systemd/nspawn")

	m := &machine{t: t, root: root, console: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	// nspawn makes the cgroups payload/ and supervisor/ below its own: give
	// it one of the test's, removed when the test ends.
	procs := nspawnCgroups(t)
	args := []string{"-c", `for p in $MW_CGROUP_PROCS; do echo $$ >"$p"; done; exec "$@"`, "sh",
		nspawn, "-D", root, "--bind=/dev/fuse", "--property=DeviceAllow=/dev/fuse rwm",
		"--boot", "--register=no", "--keep-unit", "--private-network", "--link-journal=no"}
	m.nspawn = exec.Command("sh", args...)
	m.nspawn.Env = append(cleanEnv(), "MW_CGROUP_PROCS="+strings.Join(procs, " "), "SYSTEMD_LOG_COLOR=0")
	m.nspawn.Stdout, m.nspawn.Stderr = m.console, m.console
	start := time.Now()
	if err := m.nspawn.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = m.nspawn.Wait(); close(m.exited) }()
	t.Cleanup(m.stop)

	// PID 1 is nspawn's child once it has exec'd systemd.
	deadline := time.Now().Add(30 * time.Second)
	for m.pid1 == 0 {
		for _, c := range children(m.nspawn.Process.Pid) {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c)); strings.TrimSpace(string(comm)) == "systemd" {
				m.pid1 = c
			}
		}
		select {
		case <-m.exited:
			t.Fatalf("systemd-nspawn exited before booting:\n%s", m.console.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no systemd under systemd-nspawn after 30s:\n%s", m.console.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	m.pidNS, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", m.pid1))

	// "running", or "degraded" when some unit of this machine's own
	// configuration does not start in a container: not ours to judge,
	// but logged.
	// The bus appears a moment after PID 1 starts.
	var code int
	var state string
	testenv.WaitUntil(t, 2*time.Minute, "systemd's bus in the booted system", func() bool {
		code, state = m.sh(2*time.Minute, "systemctl is-system-running --wait")
		state = strings.TrimSpace(state)
		return !strings.Contains(state, "Failed to connect to bus")
	})
	t.Logf("booted in %s: %s", time.Since(start).Round(time.Millisecond), state)
	if state != "running" && state != "degraded" {
		t.Fatalf("systemctl is-system-running: exit %d, %q\n%s", code, state, m.console.String())
	}
	if state == "degraded" {
		_, failed := m.sh(time.Minute, "systemctl --failed --no-legend")
		t.Logf("failed units of the booted system (not mountwatchd's):\n%s", failed)
	}
	return m
}

// sh runs a shell command inside the booted system (every namespace of its
// PID 1, its root and working directory) and returns the exit code and
// combined output.
func (m *machine) sh(timeout time.Duration, command string) (int, string) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(m.pid1), "-a", "sh", "-c", command)
	cmd.Env = cleanEnv("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		m.t.Fatalf("in the booted system, %q did not return within %s\n%s", command, timeout, out)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		m.t.Fatal(err)
	}
	return 0, string(out)
}

// write writes a file inside the booted system, as its processes see it
// (/run and /tmp are its own tmpfs, not the overlay the test sees).
func (m *machine) write(path, content string) {
	m.t.Helper()
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(m.pid1), "-a", "sh", "-c", `mkdir -p "${1%/*}" && cat >"$1"`, "sh", path)
	cmd.Stdin = strings.NewReader(content)
	if out, err := cmd.CombinedOutput(); err != nil {
		m.t.Fatalf("write %s in the booted system: %v\n%s", path, err, out)
	}
}

// mustSh is sh that fails the test unless the command exits 0.
func (m *machine) mustSh(command string) string {
	m.t.Helper()
	code, out := m.sh(2*time.Minute, command)
	if code != 0 {
		m.t.Fatalf("in the booted system, %q: exit %d\n%s", command, code, out)
	}
	return out
}

// show returns systemctl show's properties of a unit.
func (m *machine) show(unit string, props ...string) map[string]string {
	m.t.Helper()
	out := m.mustSh("systemctl show " + unit + " -p " + strings.Join(props, ","))
	got := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			got[k] = v
		}
	}
	return got
}

// journal returns the journal entries of the booted system matching the
// journalctl arguments, as field maps.
func (m *machine) journal(args string) []map[string]string {
	m.t.Helper()
	out := m.mustSh("journalctl --no-pager -o json " + args)
	var entries []map[string]string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var raw map[string]any
		if json.Unmarshal(sc.Bytes(), &raw) != nil {
			continue // journalctl's "-- No entries --"
		}
		e := map[string]string{}
		for k, v := range raw {
			if s, ok := v.(string); ok {
				e[k] = s
			}
		}
		entries = append(entries, e)
	}
	return entries
}

// stop powers the booted system off as nspawn does on SIGTERM, kills what is
// left by PID (its PID 1 takes its whole PID namespace with it), and checks
// that no process of it survives.
func (m *machine) stop() {
	t := m.t
	_ = m.nspawn.Process.Signal(syscall.SIGTERM)
	start := time.Now()
	defer func() { t.Logf("powered off in %s", time.Since(start).Round(time.Millisecond)) }()
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		t.Errorf("systemd-nspawn did not power the machine off within 30s; killing it")
		if m.pid1 > 0 {
			_ = syscall.Kill(m.pid1, syscall.SIGKILL)
		}
		_ = m.nspawn.Process.Kill()
		<-m.exited
	}
	if m.pidNS == "" {
		return
	}
	for _, p := range pidsInNS(m.pidNS) {
		t.Errorf("process %d of the booted system outlived it; killing it", p)
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

// children lists the child processes of pid.
func children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// pidsInNS lists the processes in PID namespace ns ("pid:[N]").
func pidsInNS(ns string) []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if l, err := os.Readlink(d + "/ns/pid"); err == nil && l == ns {
			if n, err := strconv.Atoi(filepath.Base(d)); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// hideOnHost mounts a tmpfs on dir, creating it (and removing again what it
// created) if it does not exist.
func hideOnHost(t *testing.T, dir string) {
	t.Helper()
	first := ""
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			first = d
		}
	}
	if first != "" {
		t.Cleanup(func() { _ = os.RemoveAll(first) })
	}
	testenv.Tmpfs(t, dir)
}

// nspawnCgroups makes a cgroup for nspawn below the test's own in every
// hierarchy nspawn uses (cgroup2, and the name=systemd hierarchy of a hybrid
// layout) and returns their cgroup.procs files. When the test ends they are
// removed, deepest first, with what nspawn made below them.
func nspawnCgroups(t *testing.T) []string {
	t.Helper()
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	ours := map[string]string{} // "cgroup2" or a v1 hierarchy's controllers -> path
	for _, l := range strings.Split(string(own), "\n") {
		if _, rest, ok := strings.Cut(l, ":"); ok {
			ctl, p, _ := strings.Cut(rest, ":")
			if ctl == "" {
				ctl = "cgroup2"
			}
			ours[ctl] = p
		}
	}
	var procs []string
	name := fmt.Sprintf("mountwatchd-nspawn-%d", os.Getpid())
	for _, l := range strings.Split(string(mounts), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 {
			continue
		}
		var rel string // our cgroup in this hierarchy
		switch {
		case g[0] == "cgroup2":
			rel = ours["cgroup2"]
		case g[0] == "cgroup" && strings.Contains(","+g[2]+",", ",name=systemd,"):
			rel = ours["name=systemd"]
		}
		if rel == "" {
			continue
		}
		// The mount shows the hierarchy from its root field f[3].
		sub, ok := strings.CutPrefix(rel, strings.TrimSuffix(f[3], "/"))
		if !ok {
			continue
		}
		dir := filepath.Join(f[4], sub, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("cgroup for systemd-nspawn: %v", err)
		}
		t.Cleanup(func() { removeCgroup(t, dir) })
		procs = append(procs, filepath.Join(dir, "cgroup.procs"))
	}
	testenv.Require(t, len(procs) > 0, "a cgroup2 or name=systemd cgroup hierarchy mounted")
	return procs
}

// removeCgroup removes a cgroup directory and those below it, deepest
// first, once their processes are gone.
func removeCgroup(t *testing.T, dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		var err error
		for range 50 { // a killed process leaves its cgroup a moment later
			if err = os.Remove(dirs[i]); err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			procs, _ := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs"))
			t.Errorf("cgroup %s left behind: %v (processes: %q)", dirs[i], err, procs)
		}
	}
}

// The shipped unit's watchdog, and the one the test gives it through a
// runtime drop-in: the same mechanism (WATCHDOG_USEC, a pet every half)
// on a scale that keeps the test short. The shipped value is checked first.
const (
	shippedWatchdog = "30s"
	testWatchdog    = 6 * time.Second
	testProbeEvery  = 2 * time.Second
)

// TestDebUnderSystemd installs the .deb in this machine's own systemd,
// booted as PID 1 by systemd-nspawn, and checks the unit the way systemd
// runs it: Type=notify READY and STATUS, the watchdog petted and enforced,
// a FUSE mount made and killed after start found through the unit's sandbox
// (--target.pid=1, its capabilities and system call filter), the journal
// fields, and a clean stop.
func TestDebUnderSystemd(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "bindfs", "bindfs") // runs inside: the booted system is this root
	_, err := os.Stat("/dev/fuse")
	testenv.Require(t, err == nil, "/dev/fuse")
	deb := buildDeb(t)
	m := bootMachine(t)
	// The booted system's table, as internal/mounts/testdata/nspawn-systemd-252.mountinfo
	// was captured: MOUNTWATCHD_NSPAWN_MOUNTINFO=FILE writes it there.
	if f := os.Getenv("MOUNTWATCHD_NSPAWN_MOUNTINFO"); f != "" {
		if err := os.WriteFile(f, []byte(m.mustSh("cat /proc/1/mountinfo")), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	b, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.root, "root/mountwatchd.deb"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Debian's container images (and this machine) carry a policy-rc.d that
	// forbids starting services from maintainer scripts; a real node has
	// none, so postinst's start is what is tested.
	m.mustSh("rm -f /usr/sbin/policy-rc.d")
	m.mustSh("dpkg -i /root/mountwatchd.deb")

	// postinst started it; Type=notify: the start job finished only once
	// the daemon sent READY=1.
	props := []string{"ActiveState", "SubState", "StatusText", "WatchdogUSec", "NRestarts", "MainPID", "Result"}
	st := m.show("mountwatchd.service", props...)
	t.Logf("after dpkg -i: %v", st)
	if st["ActiveState"] != "active" || st["SubState"] != "running" {
		t.Fatalf("after dpkg -i the unit is %s/%s, want active/running\n%s", st["ActiveState"], st["SubState"],
			m.mustSh("systemctl status --no-pager -l mountwatchd; journalctl --no-pager -u mountwatchd"))
	}
	if st["WatchdogUSec"] != shippedWatchdog {
		t.Errorf("WatchdogUSec=%s, want the shipped unit's %s", st["WatchdogUSec"], shippedWatchdog)
	}
	// A healthy booted system: nothing found, and every check succeeds
	// (its root overlay's layers are outside its view: left out, noted).
	if !strings.HasPrefix(st["StatusText"], "OK: ") {
		t.Errorf("STATUS=%q on the healthy booted system, want OK: ...", st["StatusText"])
	}
	code, once := m.sh(time.Minute, "/usr/bin/mountwatchd --once --target.pid=1")
	if code != 0 || !strings.Contains(once, "not reachable from the inspected root") {
		t.Errorf("--once in the booted system before any breakage: exit %d, want 0 with the root overlay noted\n%s", code, once)
	}
	if e := m.journal("_SYSTEMD_UNIT=mountwatchd.service MESSAGE='check failed'"); len(e) > 0 {
		t.Errorf("a check failed on the healthy booted system: %s: %s", e[0]["CHECK"], e[0]["ERROR"])
	}
	if e := m.journal("_SYSTEMD_UNIT=mountwatchd.service CHECK=opaque_propagation MESSAGE='check leaves part of the system out'"); len(e) != 1 {
		t.Errorf("the root overlay left out was logged %d times, want once", len(e))
	}
	// nspawn masks /proc/kmsg and /proc/sys/kernel/random/boot_id with
	// files it deleted at once: by design, not a problem.
	if e := m.journal("_SYSTEMD_UNIT=mountwatchd.service CHECK=deleted_root"); len(e) > 0 {
		t.Errorf("deleted_root reported on the healthy booted system: %s", e[0]["MESSAGE"])
	}
	// systemd's mounts over /run, /tmp, /dev and the masks over /proc and
	// /sys cover what is under them by design: hidden_entries ran (the
	// unit may call open_tree) and found nothing.
	if !regexp.MustCompile(`(?m)^  hidden_entries +ok +0 findings`).MatchString(once) {
		t.Errorf("--once in the booted system: hidden_entries did not run clean:\n%s", once)
	}
	if e := m.journal("_SYSTEMD_UNIT=mountwatchd.service CHECK=hidden_entries"); len(e) > 0 {
		t.Errorf("hidden_entries on the healthy booted system: %s %s", e[0]["MESSAGE"], e[0]["REASON"])
	}

	// A short probe interval through the documented ARGS=, a short
	// watchdog through a runtime drop-in, then restart as a user would.
	m.write("/etc/default/mountwatchd", fmt.Sprintf("ARGS=\"--probe.interval=%s --probe.timeout=1s --scan.interval=%s\"\n", testProbeEvery, testProbeEvery))
	m.write("/run/systemd/system/mountwatchd.service.d/test-watchdog.conf", fmt.Sprintf("[Service]\nWatchdogSec=%s\n", testWatchdog))
	m.mustSh("systemctl daemon-reload && systemctl restart mountwatchd")
	started := time.Now()
	st = m.show("mountwatchd.service", props...)
	if st["ActiveState"] != "active" || st["NRestarts"] != "0" || st["WatchdogUSec"] != testWatchdog.String() {
		t.Fatalf("after restart with the drop-in: %v", st)
	}
	pid := st["MainPID"]
	if cmdline := m.mustSh("tr '\\0' ' ' </proc/" + pid + "/cmdline"); !strings.Contains(cmdline, "--target.pid=1 --probe.interval=2s") {
		t.Errorf("ARGS= of /etc/default/mountwatchd not used: %q", cmdline)
	}

	// A FUSE pod volume made after the daemon started: let the table
	// settle, then kill its server. Only the probe schedule can find that.
	const uid = "0d5f7a8e-4b1c-4e7e-9a63-3c2a1f0e9b11"
	vol := "/var/lib/kubelet/pods/" + uid + "/volumes/kubernetes.io~csi/pvc-1/mount"
	// The pod wrote into its volume directory before the volume was
	// mounted over it: the unit, in its own namespace (a copy of the
	// booted system's), finds the file through its copy of /.
	m.mustSh("mkdir -p /root/vol " + vol + " && touch " + vol + "/written-before-mount && bindfs -o nonempty,subtype=ceph-fuse /root/vol " + vol)
	bindfsPID := strings.TrimSpace(m.mustSh("pgrep -n -x bindfs"))
	var hidden map[string]string
	for deadline := time.Now().Add(5*testProbeEvery + 5*time.Second); hidden == nil; time.Sleep(200 * time.Millisecond) {
		for _, e := range m.journal("_SYSTEMD_UNIT=mountwatchd.service CHECK=hidden_entries EVENT=appeared") {
			if e["MOUNT_POINT"] == vol {
				hidden = e
			}
		}
		if hidden == nil && time.Now().After(deadline) {
			t.Fatalf("no hidden_entries entry for %s; the journal:\n%s", vol, m.mustSh("journalctl --no-pager -u mountwatchd | tail -30"))
		}
	}
	if hidden["MESSAGE_ID"] != "27d04e4a948e40cc8062c66d24f8581c" || hidden["PRIORITY"] != "4" || hidden["POD_UID"] != uid ||
		!strings.Contains(hidden["DETAIL"], "written-before-mount") {
		t.Errorf("hidden_entries journal entry: %v", hidden)
	}
	time.Sleep(testProbeEvery + time.Second)
	m.mustSh("kill -9 " + bindfsPID)
	killed := time.Now()
	var entry map[string]string
	for deadline := killed.Add(5*testProbeEvery + 5*time.Second); entry == nil; time.Sleep(200 * time.Millisecond) {
		for _, e := range m.journal("_SYSTEMD_UNIT=mountwatchd.service CHECK=stale_mount EVENT=appeared") {
			if e["MOUNT_POINT"] == vol {
				entry = e
			}
		}
		if entry == nil && time.Now().After(deadline) {
			_, once := m.sh(time.Minute, "/usr/bin/mountwatchd --once --target.pid=1")
			t.Fatalf("no stale_mount entry for %s in the journal %s after its FUSE server was killed; the journal:\n%s\n--once:\n%s",
				vol, time.Since(killed).Round(time.Millisecond), m.mustSh("journalctl --no-pager -u mountwatchd | tail -30"), once)
		}
	}
	t.Logf("stale_mount in the journal %s after the kill", time.Since(killed).Round(time.Millisecond))
	for k, want := range map[string]string{
		"_SYSTEMD_UNIT": "mountwatchd.service", "SYSLOG_IDENTIFIER": "mountwatchd", "_PID": pid,
		"MESSAGE": "mount problem appeared: stale_mount " + vol, "MESSAGE_ID": "2a3f10996b9740bebc72984411f7b637",
		"PRIORITY": "2", "SEVERITY": "critical", "FSTYPE": "fuse.ceph-fuse", "ERRNO": "ENOTCONN",
		"POD_UID": uid, "VOLUME": "pvc-1",
	} {
		if entry[k] != want {
			t.Errorf("journal field %s=%q, want %q", k, entry[k], want)
		}
	}
	for _, k := range []string{"SOURCE", "MAJOR_MINOR", "MOUNT_ID", "FIRST_SEEN", "DETAIL"} {
		if entry[k] == "" {
			t.Errorf("journal entry lacks %s: %v", k, entry)
		}
	}
	if st := m.show("mountwatchd.service", "StatusText"); !strings.Contains(st["StatusText"], "stale_mount") {
		t.Errorf("STATUS= does not name the problem: %q", st["StatusText"])
	}
	m.mustSh("umount -l " + vol)

	// Petted: no restart over two watchdog periods.
	if d := 2*testWatchdog + time.Second - time.Since(started); d > 0 {
		time.Sleep(d)
	}
	if st := m.show("mountwatchd.service", props...); st["NRestarts"] != "0" || st["MainPID"] != pid || st["ActiveState"] != "active" {
		t.Errorf("over two WatchdogSec the unit restarted: %v", st)
	}
	if e := m.journal("_SYSTEMD_UNIT=mountwatchd.service -p warning MESSAGE='not petting the systemd watchdog: the loop makes no progress'"); len(e) > 0 {
		t.Errorf("the daemon stopped petting the watchdog: %v", e[0])
	}

	// Enforced: a stopped daemon is killed by the watchdog and restarted.
	m.mustSh("kill -STOP " + pid)
	stopped := time.Now()
	testenv.WaitUntil(t, 2*testWatchdog+30*time.Second, "the watchdog restart", func() bool {
		st := m.show("mountwatchd.service", props...)
		return st["NRestarts"] == "1" && st["ActiveState"] == "active" && st["SubState"] == "running" && st["MainPID"] != pid
	})
	t.Logf("a stopped daemon restarted by the watchdog after %s", time.Since(stopped).Round(time.Millisecond))
	if e := m.journal("_SYSTEMD_UNIT=init.scope UNIT=mountwatchd.service MESSAGE='mountwatchd.service: Watchdog timeout (limit " + testWatchdog.String() + ")!'"); len(e) == 0 {
		t.Errorf("systemd logged no watchdog timeout:\n%s", m.mustSh("journalctl --no-pager -u mountwatchd | tail -30"))
	}

	// A clean stop: SIGTERM answered, no SIGKILL.
	m.mustSh("systemctl stop mountwatchd")
	if st := m.show("mountwatchd.service", "ActiveState", "Result", "ExecMainCode", "ExecMainStatus"); st["ActiveState"] != "inactive" || st["Result"] != "success" {
		t.Errorf("after systemctl stop: %v\n%s", st, m.mustSh("journalctl --no-pager -u mountwatchd | tail -20"))
	}
}
