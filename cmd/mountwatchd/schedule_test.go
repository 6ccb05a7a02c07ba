package main

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// The tests here are about the probe schedule (issue 8): a FUSE server that
// dies, hangs or resumes changes nothing in the mount table, so only the
// daemon's probe runs can see it. Every test lets the table settle first,
// runs the daemon with --interval=1h so that no re-read of the table can
// help, and asserts that no read happened while the servers broke.

// shell runs a command in a mount namespace: the test's own or a stand-in
// node's.
type shell func(t testing.TB, command string)

func ownShell(t testing.TB, command string) {
	t.Helper()
	if out, err := exec.Command("sh", "-ec", command).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", command, err, out)
	}
}

func nodeShell(n *testenv.Node) shell {
	return func(t testing.TB, command string) { t.Helper(); n.Run(command) }
}

// fuseConn is one ceph-fuse-shaped FUSE connection made with bindfs in the
// namespace sh runs in: the filesystem mount, a CSI staging mount of one of
// its directories and pod volumes bound from the staging mount, as
// ceph-csi lays them out. Its server can be killed, stopped, resumed and
// replaced by a new one (the way a node heals: unmount, mount again).
type fuseConn struct {
	sh                  shell
	name, dir, mnt      string
	staging             string
	pods                []string
	pidFile             string
	kubelet, volumePath string
}

func newFuseConn(t testing.TB, sh shell, dir, kubelet, name string, pods int) *fuseConn {
	t.Helper()
	testenv.RequireCommand(t, "bindfs", "bindfs")
	handle := "0001-0011-" + name
	c := &fuseConn{sh: sh, name: name, dir: dir, mnt: filepath.Join(dir, "fuse-"+name), kubelet: kubelet,
		pidFile: filepath.Join(dir, name+".pid"), volumePath: "volumes/csi/" + name,
		staging: filepath.Join(kubelet, "plugins/kubernetes.io/csi/cephfs.csi.ceph.com",
			fmt.Sprintf("%x", sha256.Sum256([]byte(handle))), "globalmount")}
	if err := os.MkdirAll(filepath.Join(dir, "backing-"+name, c.volumePath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(c.staging, 0o750); err != nil {
		t.Fatal(err)
	}
	for i := range pods {
		uid := fmt.Sprintf("%08x-0000-4000-8000-%x", i, sha256.Sum256([]byte(name)))[:36]
		c.pods = append(c.pods, testenv.KubeletPodVolume(t, kubelet, uid, "pvc-"+name, "cephfs.csi.ceph.com", handle))
	}
	t.Cleanup(func() {
		if pid := c.pid(); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGCONT)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		// In the test's own namespace the mounts outlive the server;
		// a node's go with its namespace.
		ms := c.mounts()
		slices.Reverse(ms)
		for _, m := range ms {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	})
	c.mount(t)
	return c
}

// mounts lists every mount point of the connection, the filesystem's first.
func (c *fuseConn) mounts() []string { return append([]string{c.mnt, c.staging}, c.pods...) }

func (c *fuseConn) pid() int {
	data, _ := os.ReadFile(c.pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// mount starts a bindfs server (fstype fuse.ceph-fuse) and binds the staging
// and pod volume mounts from it.
func (c *fuseConn) mount(t testing.TB) {
	t.Helper()
	cmd := fmt.Sprintf("mkdir -p %[1]s && { bindfs -f --no-allow-other -o subtype=ceph-fuse %[2]s %[1]s >/dev/null 2>&1 & echo $! > %[3]s; }"+
		" && i=0 && until mountpoint -q %[1]s || [ $i -ge 200 ]; do i=$((i+1)); sleep 0.05; done"+
		" && mount --bind %[1]s/%[4]s %[5]s", c.mnt, filepath.Join(c.dir, "backing-"+c.name), c.pidFile, c.volumePath, c.staging)
	for _, p := range c.pods {
		cmd += fmt.Sprintf(" && mount --bind %s %s", c.staging, p)
	}
	c.sh(t, cmd)
}

func (c *fuseConn) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(c.pid(), sig); err != nil {
		t.Fatalf("%s server: kill -%d: %v", c.name, sig, err)
	}
}

// kill kills the server as the OOM killer would: the mounts stay, dead.
func (c *fuseConn) kill(t testing.TB) { c.signal(t, syscall.SIGKILL) }

// remount heals a killed connection: unmount its dead mounts, mount anew.
func (c *fuseConn) remount(t testing.TB) {
	t.Helper()
	ms := c.mounts()
	slices.Reverse(ms)
	cmd := "true"
	for _, m := range ms {
		cmd += " && umount -l " + m
	}
	c.sh(t, cmd)
	c.mount(t)
}

// problems is the set of "check mountpoint" of the mountwatchd_problem
// series in an exposition.
func problems(body string) map[string]bool {
	set := map[string]bool{}
	for _, l := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(l, `mountwatchd_problem{check="`)
		if !ok {
			continue
		}
		check, rest, _ := strings.Cut(rest, `"`)
		_, rest, ok = strings.Cut(rest, `mountpoint="`)
		if !ok {
			continue
		}
		mp, _, _ := strings.Cut(rest, `"`)
		set[check+" "+mp] = true
	}
	return set
}

func (d *daemonProc) probeRuns(check string) float64 {
	d.t.Helper()
	return d.value(fmt.Sprintf(`mountwatchd_check_runs_total{check=%q,kind="probe"} `, check))
}

// awaitProblems waits until the problems under dir are exactly want.
func awaitProblems(t testing.TB, d *daemonProc, dir, what string, want map[string]bool) {
	t.Helper()
	var got map[string]bool
	deadline := time.Now().Add(30 * time.Second)
	for {
		got = map[string]bool{}
		for p := range problems(d.metrics()) {
			if strings.Contains(p, " "+dir+"/") {
				got[p] = true
			}
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: /metrics has %v, want exactly %v\n%s", what, keys(got), keys(want), d.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func expect(check string, mps ...string) map[string]bool {
	m := map[string]bool{}
	for _, mp := range mps {
		m[check+" "+mp] = true
	}
	return m
}

// runsBetween fails the test when more than two probe runs of check ended
// between before and now: a breakage must be seen by the first probe run
// that starts after it (the run in flight when it happened may miss it).
func runsBetween(t *testing.T, d *daemonProc, check, what string, before float64) {
	t.Helper()
	if n := d.probeRuns(check) - before; n > 2 {
		t.Errorf("%s: seen only after %v probe runs of %s, want at most 2", what, n, check)
	}
}

// probeScheduleScenario is issue 8's scenario: death, hang, resume with an
// unchanged mount table.
func probeScheduleScenario(t *testing.T, sh shell, dir string, target ...string) {
	kubelet := filepath.Join(dir, "kubelet")
	dead := newFuseConn(t, sh, dir, kubelet, "dead", 2)
	hung := newFuseConn(t, sh, dir, kubelet, "hung", 1)
	d := startDaemon(t, nil, append([]string{"--interval=1h", "--probe.interval=1s", "--probe.timeout=2s",
		"--path.kubelet", kubelet, "--path.pod-logs", dir + "/logs", "--log.target=stderr"}, target...)...)

	// Settled: probe runs go on over the unchanged table, nothing is wrong.
	r := d.probeRuns("stale_mount")
	testenv.WaitUntil(t, 20*time.Second, "two probe runs over the settled table", func() bool { return d.probeRuns("stale_mount") >= r+2 })
	awaitProblems(t, d, dir, "healthy", nil)
	reads := d.value("mountwatchd_mount_table_reads_total ")
	probes := d.value("mountwatchd_probes_total ")

	dead.kill(t)
	r = d.probeRuns("stale_mount")
	awaitProblems(t, d, dir, "server killed", expect("stale_mount", dead.mounts()...))
	runsBetween(t, d, "stale_mount", "a killed server", r)

	hung.signal(t, syscall.SIGSTOP)
	r = d.probeRuns("hung_mount")
	want := expect("stale_mount", dead.mounts()...)
	for k := range expect("hung_mount", hung.mounts()...) {
		want[k] = true
	}
	awaitProblems(t, d, dir, "server stopped", want)
	runsBetween(t, d, "hung_mount", "a stopped server", r)

	hung.signal(t, syscall.SIGCONT)
	r = d.probeRuns("hung_mount")
	awaitProblems(t, d, dir, "server resumed", expect("stale_mount", dead.mounts()...))
	runsBetween(t, d, "hung_mount", "a resumed server", r)

	if now := d.value("mountwatchd_mount_table_reads_total "); now != reads {
		t.Errorf("the table was read %v times while the servers broke: the test proves nothing about the probe schedule", now-reads)
	}
	if now := d.value("mountwatchd_probes_total "); now < probes+3 {
		t.Errorf("probes_total %v -> %v: the unchanged table was not probed anew", probes, now)
	}
}

// The daemon probes an unchanged table on every probe interval: a server
// killed, stopped or resumed after the table settled is reported (on the
// staging mount and every pod bind mount of the connection) and cleared by
// the probe runs alone.
func TestDaemonProbesUnchangedTable(t *testing.T) {
	testenv.RequireRoot(t)
	probeScheduleScenario(t, ownShell, t.TempDir())
}

// The same through --target.pid: the servers and mounts live in a stand-in
// node's mount namespace, as a DaemonSet sees the node.
func TestDaemonProbesUnchangedTableOtherNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	node := testenv.NewNode(t, "true")
	probeScheduleScenario(t, nodeShell(node), dir, "--target.pid", strconv.Itoa(node.PID))
	if data, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(data), dir+"/fuse-dead") {
		t.Error("the node's mounts are in the test's own namespace: the test proves nothing")
	}
}

// Chaos: three FUSE servers killed, stopped and resumed in a loop for 30
// seconds while the daemon probes every second and a client scrapes. At
// each settled moment /metrics reports exactly what is broken; a real
// journald holds exactly one appeared and one cleared entry per mount per
// breakage; goroutines and threads return to their baseline once every
// server answers again.
func TestDaemonProbeChaos(t *testing.T) {
	testenv.RequireRoot(t)
	journalDir, _ := testenv.StartJournald(t)
	dir := t.TempDir()
	kubelet := filepath.Join(dir, "kubelet")
	var conns []*fuseConn
	for _, name := range []string{"alpha", "bravo", "charlie"} {
		conns = append(conns, newFuseConn(t, ownShell, dir, kubelet, name, 2))
	}
	d := startDaemon(t, nil, "--interval=1h", "--probe.interval=1s", "--probe.timeout=1s",
		"--path.kubelet", kubelet, "--path.pod-logs", dir+"/logs", "--log.target=journald")
	r := d.probeRuns("stale_mount")
	testenv.WaitUntil(t, 20*time.Second, "two probe runs", func() bool { return d.probeRuns("stale_mount") >= r+2 })
	awaitProblems(t, d, dir, "healthy", nil)
	goroutines := func() float64 { return d.value("go_goroutines ") }
	baseG, baseT := goroutines(), testenv.ThreadsOf(t, d.cmd.Process.Pid)

	// A client scrapes all along; every scrape must answer.
	stop := make(chan struct{})
	var scrapes, failed atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if code, _ := d.get("/metrics"); code != http.StatusOK {
				failed.Add(1)
			}
			scrapes.Add(1)
		}
	}()

	breakages := map[string]int{} // "check mountpoint" -> times broken
	start := time.Now()
	step := 0
	for ; time.Since(start) < 30*time.Second; step++ {
		killed, stopped := conns[step%3], conns[(step+1)%3]
		killed.kill(t)
		stopped.signal(t, syscall.SIGSTOP)
		want := expect("stale_mount", killed.mounts()...)
		for k := range expect("hung_mount", stopped.mounts()...) {
			want[k] = true
		}
		for k := range want {
			breakages[k]++
		}
		awaitProblems(t, d, dir, fmt.Sprintf("step %d: %s killed, %s stopped", step, killed.name, stopped.name), want)
		stopped.signal(t, syscall.SIGCONT)
		killed.remount(t)
		awaitProblems(t, d, dir, fmt.Sprintf("step %d: healed", step), nil)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d steps, %d scrapes", step, scrapes.Load())
	if failed.Load() > 0 {
		t.Errorf("%d of %d scrapes failed", failed.Load(), scrapes.Load())
	}

	// The journal: one appeared and one cleared per mount per breakage.
	for _, c := range conns {
		for _, mp := range c.mounts() {
			appeared, cleared, other := map[string]int{}, map[string]int{}, map[string]int{}
			var entries []map[string]any
			for _, check := range []string{"stale_mount", "hung_mount"} {
				n := breakages[check+" "+mp]
				testenv.WaitUntil(t, 10*time.Second, "journal entries of "+mp, func() bool {
					entries = testenv.JournalEntries(t, journalDir, "MOUNT_POINT="+mp, "CHECK="+check)
					return len(entries) >= 2*n
				})
				for _, e := range entries {
					switch e["EVENT"] {
					case "appeared":
						appeared[check]++
					case "cleared":
						cleared[check]++
					default:
						other[check]++
					}
				}
				if appeared[check] != n || cleared[check] != n || other[check] != 0 {
					t.Errorf("%s %s: journal has %d appeared, %d cleared, %d other entries; broken %d times",
						check, mp, appeared[check], cleared[check], other[check], n)
				}
			}
		}
	}

	if t.Failed() {
		for _, e := range testenv.JournalEntries(t, journalDir, "SYSLOG_IDENTIFIER=mountwatchd") {
			t.Logf("journal: %v %v", e["__REALTIME_TIMESTAMP"], e["MESSAGE"])
		}
	}
	// Goroutines and threads back to their baseline: no probe is left
	// blocked, no thread left pinned.
	testenv.WaitUntil(t, 20*time.Second, fmt.Sprintf("goroutines back to %v (now %v)", baseG, goroutines()), func() bool {
		return goroutines() <= baseG+2
	})
	// The runtime may keep a thread or two it started for other blocking
	// syscalls under load (journal sends, table reads); a leak of the hung
	// probes' threads would be one per stopped server per step.
	// TestProberHungThreadsExit pins the exact behaviour with 20 probes.
	testenv.WaitUntil(t, 20*time.Second, fmt.Sprintf("threads back to %d (now %d)", baseT, testenv.ThreadsOf(t, d.cmd.Process.Pid)), func() bool {
		return testenv.ThreadsOf(t, d.cmd.Process.Pid) <= baseT+3
	})
	if b := d.value("mountwatchd_probes_blocked "); b != 0 {
		t.Errorf("%v probes still blocked", b)
	}
}
