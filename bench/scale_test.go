package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Settings, from the environment (the Makefile's bench target sets them):
//
//	MOUNTWATCHD_BENCH_SIZES   mount table sizes, default 1000,10000,50000
//	MOUNTWATCHD_BENCH_REPS    interleaved repetitions per size, default 5
//	MOUNTWATCHD_BENCH_IDLE    daemon idle window at 10,000 mounts, default 15s
//	                          (the figure is over 60s); 0 skips it
//	MOUNTWATCHD_BENCH_IDLE_BASELINE  another mountwatchd binary (say, built
//	                          from main) whose idle window runs first, on the
//	                          same table in the same run, as the baseline
//	MOUNTWATCHD_BENCH_PHASES  comma-separated subset of scale,idle,scrape,threads,scan,devzero
//	MOUNTWATCHD_BENCH_NODE_EXPORTER  a node_exporter binary; else one on PATH,
//	                          else `go install` of nodeExporterVersion once
//	MOUNTWATCHD_BENCH_OUT     also write the table to this file
type settings struct {
	sizes        []int
	reps         int
	idle         time.Duration
	idleBaseline string
	phases       map[string]bool
}

const nodeExporterVersion = "v1.12.1"

func loadSettings(b *testing.B) settings {
	s := settings{sizes: []int{1000, 10000, 50000}, reps: 5, idle: 15 * time.Second, phases: map[string]bool{}}
	if v := os.Getenv("MOUNTWATCHD_BENCH_SIZES"); v != "" {
		s.sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("MOUNTWATCHD_BENCH_SIZES=%q: want sizes like 1000,10000", v)
			}
			s.sizes = append(s.sizes, n)
		}
	}
	if v := os.Getenv("MOUNTWATCHD_BENCH_REPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("MOUNTWATCHD_BENCH_REPS=%q", v)
		}
		s.reps = n
	}
	if v := os.Getenv("MOUNTWATCHD_BENCH_IDLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("MOUNTWATCHD_BENCH_IDLE=%q: %v", v, err)
		}
		s.idle = d
	}
	s.idleBaseline = os.Getenv("MOUNTWATCHD_BENCH_IDLE_BASELINE")
	phases := "scale,idle,scrape,threads,scan,devzero"
	if v := os.Getenv("MOUNTWATCHD_BENCH_PHASES"); v != "" {
		phases = v
	}
	for _, p := range strings.Split(phases, ",") {
		s.phases[strings.TrimSpace(p)] = true
	}
	return s
}

// row is one line of the table: a figure and its baseline from the same run.
type row struct {
	what, figure, baseline, ratio string
}

type report struct {
	mu   sync.Mutex
	rows []row
}

func (r *report) add(what, figure, baseline, ratio string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, row{what, figure, baseline, ratio})
}

// BenchmarkNodeScale is issue 11's benchmark: one table, each figure beside
// its baseline measured in the same run, interleaved, medians. Run it with
// `make bench` (or go test -run '^$' -bench NodeScale -benchtime 1x ./bench/).
func BenchmarkNodeScale(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireCommand(b, "bindfs", "bindfs")
	testenv.RequireCommand(b, "findmnt", "util-linux")
	testenv.RequireCommand(b, "getfattr", "attr")
	s := loadSettings(b)
	bin := buildMountwatchd(b)
	ne, neWhy := nodeExporter(b)
	rep := &report{}
	if ne == "" {
		rep.add("node_exporter", "not measured: "+neWhy, "", "")
	}
	start := time.Now()
	for _, size := range s.sizes {
		if wantIdle := s.phases["idle"] && size == 10000; !s.phases["scale"] && !wantIdle {
			continue
		}
		b.Run(fmt.Sprintf("mounts=%d", size), func(b *testing.B) { scalePhase(b, s, bin, ne, size, rep) })
	}
	if s.phases["scrape"] {
		b.Run("scrape", func(b *testing.B) { scrapePhase(b, bin, rep) })
	}
	if s.phases["threads"] {
		b.Run("threads", func(b *testing.B) { threadsPhase(b, bin, rep) })
	}
	if s.phases["scan"] {
		b.Run("scan", func(b *testing.B) { scanPhase(b, bin, s.reps, rep) })
	}
	if s.phases["devzero"] {
		b.Run("devzero", func(b *testing.B) { devZeroPhase(b, bin, s.reps, rep) })
	}
	printReport(b, s, rep, time.Since(start))
}

// ----- the mount table at each size

// scalePhase builds a table of about size mounts and times, interleaved,
// reps times each: the floor (cat mountinfo), findmnt, node_exporter's
// scrape, --mountinfo of a captured copy, and --once with every check
// (default flags, and with --scan.rate=0).
func scalePhase(b *testing.B, s settings, bin, ne string, size int, rep *report) {
	n := testenv.NewScaleNode(b, filepath.Join(b.TempDir(), "node"))
	n.AddFUSE(b, 5, 4)
	n.AddOverlays(b, 5)
	if left := size - testenv.MountCount(b); left > 1 {
		n.AddPods(b, left/2, 2)
	}
	mounts := testenv.MountCount(b)
	label := fmt.Sprintf("%s mounts (%s pods)", thousands(mounts), thousands(n.Pods()))
	table, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		b.Fatal(err)
	}
	capture := filepath.Join(n.Dir, "mountinfo.copy")
	if err := os.WriteFile(capture, table, 0o644); err != nil {
		b.Fatal(err)
	}
	node := []string{"--path.kubelet", n.Kubelet, "--path.pod-logs", n.PodLogs, "--path.containerd-snapshots", n.Snapshots}
	once := append([]string{"--once", "--output", "json"}, node...)
	onceFast := append(slices.Clone(once), "--scan.rate=0")
	parse := []string{"--mountinfo", capture, "--output", "json", "--path.kubelet", n.Kubelet}

	var scrape func() (time.Duration, error)
	var neProc *exec.Cmd
	if ne != "" {
		neProc, scrape = startNodeExporter(b, ne, n.Dir)
	}
	if s.phases["scale"] {
		var floor, findmnt, neT, parseT, onceT, onceFastT, onceOneCore, onceCPU, onceLongest []time.Duration
		var lastOnce onceResult
		reps := s.reps
		if size >= 50000 {
			reps = min(reps, 3)
		}
		for i := -1; i < reps; i++ { // i == -1 warms caches and is not counted
			f := timeCmd(b, nil, "cat", "/proc/self/mountinfo")
			fm := timeCmd(b, nil, "findmnt")
			p := timeCmd(b, nil, bin, parse...)
			o := runOnce(b, bin, once...)
			of := runOnce(b, bin, onceFast...)
			o1 := runOnce(b, "env", append([]string{"GOMAXPROCS=1", bin}, onceFast...)...)
			var nt time.Duration
			if scrape != nil {
				if nt, err = scrape(); err != nil {
					b.Fatalf("node_exporter scrape: %v", err)
				}
			}
			if i < 0 {
				continue
			}
			floor, findmnt, parseT = append(floor, f.wall), append(findmnt, fm.wall), append(parseT, p.wall)
			onceT, onceFastT, onceOneCore = append(onceT, o.wall), append(onceFastT, of.wall), append(onceOneCore, o1.wall)
			onceCPU = append(onceCPU, of.cpu)
			onceLongest = append(onceLongest, of.checks[of.longest])
			neT = append(neT, nt)
			lastOnce = of
		}
		onceRSSPeak, _ := peakRSS(b, bin, onceFast...) // one more run, for its peak RSS alone
		fl := median(floor)
		x := func(d time.Duration) string { return fmt.Sprintf("%.1f×", float64(d)/float64(fl)) }
		base := "floor `cat /proc/self/mountinfo` " + ms(fl)
		rep.add(label+": `--mountinfo` of a captured copy (parse + table checks)", ms(median(parseT)), base, x(median(parseT)))
		rep.add(label+": `--once`, every check, `--scan.rate=0`", ms(median(onceFastT))+
			fmt.Sprintf(" (CPU %s; checks run at once, the longest %s, %s; %s entries scanned; peak RSS %s)", ms(median(onceCPU)),
				ms(median(onceLongest)), lastOnce.longest, thousands(int(lastOnce.entries)), mib(onceRSSPeak)),
			base, x(median(onceFastT)))
		rep.add(label+": `--once`, every check, `--scan.rate=0`: CPU time (user + system, probe helpers included)", ms(median(onceCPU)), base, x(median(onceCPU)))
		rep.add(label+": `--once`, every check, `--scan.rate=0`, on one core (`GOMAXPROCS=1`: one scan worker)", ms(median(onceOneCore)),
			"the same on every core: "+ms(median(onceFastT)), fmt.Sprintf("%.2f×", float64(median(onceOneCore))/float64(median(onceFastT))))
		rep.add(label+": `--once`, every check, default flags (`--scan.rate=20000`)", ms(median(onceT))+statusNote(lastOnce), base, x(median(onceT)))
		rep.add(label+": `findmnt`", ms(median(findmnt)), base, x(median(findmnt)))
		if scrape != nil {
			rep.add(label+": node_exporter "+nodeExporterVersion+" filesystem collector, one scrape",
				ms(median(neT))+fmt.Sprintf(" (RSS %s)", mib(rssOf(b, neProc.Process.Pid))), base, x(median(neT)))
		}
	}
	if s.phases["idle"] && size == 10000 && s.idle > 0 {
		if s.idleBaseline != "" {
			idlePhase(b, s.idle, s.idleBaseline, node, label+" [baseline binary "+s.idleBaseline+"]", neProc, scrape, rep)
		}
		idlePhase(b, s.idle, bin, node, label, neProc, scrape, rep)
	}
}

// idlePhase runs the daemon with default flags on the unchanged table for
// window, beside node_exporter, each scraped once every 15 s (at 7.5 s into
// each 15 s) as Prometheus would: CPU (per-thread schedstat, ns) and RSS of
// both. The daemon's RSS is its peak over the window (VmHWM, reset to the
// current RSS at the window's start through clear_refs), not one sample:
// a node agent's memory budget is about its peak, and the peak comes when
// a collection lands during a re-read of the table. Its RSS at the end of
// the window is said beside it.
func idlePhase(b *testing.B, window time.Duration, bin string, node []string, label string,
	neProc *exec.Cmd, neScrape func() (time.Duration, error), rep *report) {
	d := startDaemon(b, bin, append(node, "--log.target=stderr")...)
	// Settled: every kind ran once (the scan kind reads the kubelet tree
	// at --scan.rate), then a little longer.
	testenv.WaitUntil(b, 5*time.Minute, "the daemon's first scan", func() bool {
		return metric(d.metrics(b), `mountwatchd_check_runs_total{check="stray_overlay_xattr",kind="scan"}`) >= 1
	})
	time.Sleep(2 * time.Second)
	var neCPU0 int64
	if neProc != nil {
		neCPU0 = cpuNanos(b, neProc.Process.Pid)
	}
	resetPeakRSS(b, d.pid())
	cpu0, t0 := cpuNanos(b, d.pid()), time.Now()
	var scrapes, neScrapes []time.Duration
	for k := 0; ; k++ {
		at := t0.Add(7500*time.Millisecond + time.Duration(k)*15*time.Second)
		if at.After(t0.Add(window)) {
			break
		}
		time.Sleep(time.Until(at))
		st := time.Now()
		d.metrics(b)
		scrapes = append(scrapes, time.Since(st))
		if neScrape != nil {
			if t, err := neScrape(); err == nil {
				neScrapes = append(neScrapes, t)
			}
		}
	}
	time.Sleep(time.Until(t0.Add(window)))
	elapsed := time.Since(t0)
	cpu := float64(cpuNanos(b, d.pid())-cpu0) / float64(elapsed) * 100
	rss, peak := rssOf(b, d.pid()), peakRSSOf(b, d.pid())
	w := fmt.Sprintf("%.0f s", window.Seconds())
	fig := fmt.Sprintf("%.3f%% of a core, RSS peak %s (%s at the end)", cpu, mib(peak), mib(rss))
	if len(scrapes) > 0 {
		fig += ", scrape " + ms(median(scrapes))
	}
	baseline := "node_exporter not measured"
	ratio := ""
	if neProc != nil {
		neC := float64(cpuNanos(b, neProc.Process.Pid)-neCPU0) / float64(elapsed) * 100
		baseline = fmt.Sprintf("node_exporter, same window and scrapes: %.3f%% of a core, RSS %s", neC, mib(rssOf(b, neProc.Process.Pid)))
		if len(neScrapes) > 0 {
			baseline += ", scrape " + ms(median(neScrapes))
		}
		if neC > 0 {
			ratio = fmt.Sprintf("%.2f× CPU", cpu/neC)
		}
	}
	rep.add(label+": daemon, default flags, unchanged table over "+w+", scraped every 15 s", fig, baseline, ratio)
	d.stop(b)
}

// ----- a table that never ends

// devZeroPhase: the peak RSS of --mountinfo /dev/zero, which reads up to
// the 64 MiB default --mountinfo.max-bytes and refuses the table, beside
// the same command on a one-line table (the process's own footprint); the
// median of reps runs, interleaved.
func devZeroPhase(b *testing.B, bin string, reps int, rep *report) {
	small := filepath.Join(b.TempDir(), "one.mountinfo")
	if err := os.WriteFile(small, []byte("22 1 259:1 / / rw - ext4 /dev/vda rw\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	var zero, one []int64
	for range reps {
		z, code := peakRSS(b, bin, "--mountinfo", "/dev/zero", "--once.timeout=50s")
		if code != 2 {
			b.Fatalf("--mountinfo /dev/zero: exit %d, want 2", code)
		}
		o, _ := peakRSS(b, bin, "--mountinfo", small)
		zero, one = append(zero, z), append(one, o)
	}
	z, o := medianInt(zero), medianInt(one)
	rep.add("`--mountinfo /dev/zero`, refused at the 64 MiB `--mountinfo.max-bytes`: peak RSS", mib(z),
		"`--mountinfo` of a one-line table: peak RSS "+mib(o), fmt.Sprintf("+%s", mib(z-o)))
}

// ----- scrapes under load

// scrapePhase: 20 concurrent scrapers against the daemon, and one alone,
// first on a healthy table (the baseline), then with 1,000 active problems
// (985 deleted pod volume roots and 15 mounts of 5 hung FUSE connections,
// their servers stopped with SIGSTOP). Each load runs twice: as served
// (the scrapers take the gzip body as sent: what the daemon's queueing
// costs) and with the Go client's gunzip inside the timed window.
func scrapePhase(b *testing.B, bin string, rep *report) {
	n := testenv.NewScaleNode(b, filepath.Join(b.TempDir(), "node"))
	servers := n.AddFUSE(b, 5, 1) // 3 mounts per connection
	const deleted = 985
	var srcs []string
	for i := range deleted {
		src := filepath.Join(n.Dir, "deleted-src", strconv.Itoa(i))
		dst := filepath.Join(n.Kubelet, "pods", testenv.PodUID(i), "volumes/kubernetes.io~empty-dir/data")
		for _, d := range []string{src, dst} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
			b.Fatal(err)
		}
		srcs = append(srcs, src)
	}
	d := startDaemon(b, bin, "--path.kubelet", n.Kubelet, "--path.pod-logs", n.PodLogs, "--interval=1h",
		"--probe.interval=1s", "--probe.timeout=500ms", "--log.target=stderr")
	testenv.WaitUntil(b, time.Minute, "a probe run", func() bool {
		return metric(d.metrics(b), `mountwatchd_check_runs_total{check="hung_mount",kind="probe"}`) >= 1
	})
	healthy := scrapeLoads(b, d, "mountwatchd_problems", 1)

	for _, src := range srcs {
		if err := os.Remove(src); err != nil {
			b.Fatal(err)
		}
	}
	// The root field's "//deleted" raises no mount event: a mount does.
	testenv.Tmpfs(b, filepath.Join(n.Dir, "poke"))
	for _, p := range servers {
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			b.Fatal(err)
		}
	}
	var problems float64
	testenv.WaitUntil(b, 2*time.Minute, "1,000 problems", func() bool {
		problems = sumMetric(d.metrics(b), "mountwatchd_problems{")
		return problems >= 1000
	})
	loaded := scrapeLoads(b, d, "mountwatchd_problem", deleted)
	body := d.metrics(b)
	what := fmt.Sprintf("%.0f active problems (%.0f hung mounts, %.0f probes blocked)",
		problems, metric(body, `mountwatchd_problems{check="hung_mount",severity="critical"}`), metric(body, "mountwatchd_probes_blocked"))
	for _, mode := range []testenv.ScrapeMode{testenv.Served, testenv.Decoded} {
		how := "as served (gzip, request to its last byte)"
		if mode == testenv.Decoded {
			how = "with the Go client's gunzip inside the timed window"
		}
		l, h := loaded[mode], healthy[mode]
		rep.add(fmt.Sprintf("scrape p50 / p99 %s, 20 concurrent scrapers × 25, %s", how, what),
			ms(l[0][0])+" / "+ms(l[0][1])+" (one scraper alone: "+ms(l[1][0])+" / "+ms(l[1][1])+")",
			"same daemon and scrapers, healthy table: "+ms(h[0][0])+" / "+ms(h[0][1])+" (one scraper alone: "+ms(h[1][0])+" / "+ms(h[1][1])+")",
			fmt.Sprintf("%.1f× p99", float64(l[0][1])/float64(max(h[0][1], 1))))
	}
	d.stop(b)
	for _, p := range servers {
		_ = p.Signal(syscall.SIGCONT)
	}
}

// scrapeLoads runs, interleaved, 20 concurrent scrapers × 25 and one
// scraper × 50, each twice: as served (the scrapers take the gzip body as
// sent) and with the Go client decoding it inside the timed window. It
// returns p50 and p99 per mode and load (20 scrapers, then one), and checks
// afterwards, outside the timed windows, that every served body decodes and
// parses with at least series series of family.
func scrapeLoads(b *testing.B, d *daemon, family string, series int) map[testenv.ScrapeMode][2][2]time.Duration {
	out := map[testenv.ScrapeMode][2][2]time.Duration{}
	var bodies [][]byte
	for i, load := range [][2]int{{20, 25}, {1, 50}} {
		for _, mode := range []testenv.ScrapeMode{testenv.Served, testenv.Decoded} {
			lat, bs, err := testenv.ScrapeLoad(d.base+"/metrics", load[0], load[1], mode)
			if err != nil {
				b.Fatalf("%d scrapers, %s: %v\n%s", load[0], mode, err, d.stderr)
			}
			r := out[mode]
			r[i] = [2]time.Duration{testenv.Quantile(lat, 0.5), testenv.Quantile(lat, 0.99)}
			out[mode] = r
			bodies = append(bodies, bs...)
		}
	}
	distinct, err := testenv.CheckScrapes(bodies, family, series)
	if err != nil {
		b.Fatalf("served bodies: %v", err)
	}
	b.Logf("%d served bodies, %d distinct, each decodes and has at least %d %s series", len(bodies), distinct, series, family)
	return out
}

// ----- threads and goroutines with stopped FUSE servers

// threadsPhase: 50 FUSE connections probed every 250 ms with a 100 ms
// timeout; threads and goroutines after 20 probe runs healthy (the
// baseline), after 20 more with every server stopped, and after 20 more
// once they run again.
func threadsPhase(b *testing.B, bin string, rep *report) {
	n := testenv.NewScaleNode(b, filepath.Join(b.TempDir(), "node"))
	servers := n.AddFUSE(b, 50, 0)
	d := startDaemon(b, bin, "--path.kubelet", n.Kubelet, "--path.pod-logs", n.PodLogs, "--interval=1h",
		"--probe.interval=250ms", "--probe.timeout=100ms", "--log.target=stderr")
	runs := func() float64 {
		return metric(d.metrics(b), `mountwatchd_check_runs_total{check="stale_mount",kind="probe"}`)
	}
	after20 := func(what string) (threads, goroutines int, body string) {
		from := runs()
		testenv.WaitUntil(b, 2*time.Minute, what, func() bool { return runs() >= from+20 })
		body = d.metrics(b)
		return testenv.ThreadsOf(b, d.pid()), int(metric(body, "go_goroutines")), body
	}
	th0, g0, _ := after20("20 healthy probe runs")
	for _, p := range servers {
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			b.Fatal(err)
		}
	}
	th1, g1, body := after20("20 probe runs with 50 servers stopped")
	for _, p := range servers {
		_ = p.Signal(syscall.SIGCONT)
	}
	testenv.WaitUntil(b, time.Minute, "blocked probes to return", func() bool { return metric(d.metrics(b), "mountwatchd_probes_blocked") == 0 })
	th2, g2, _ := after20("20 probe runs after the servers resumed")
	rep.add(fmt.Sprintf("threads / goroutines after 20 probe runs with 50 stopped FUSE servers (%.0f probes blocked, "+
		"%.0f connections not probed: --probe.max-blocked=32)", metric(body, "mountwatchd_probes_blocked"), metric(body, "mountwatchd_probes_not_probed")),
		fmt.Sprintf("%d / %d; %d / %d after 20 more runs with the servers resumed", th1, g1, th2, g2),
		fmt.Sprintf("after 20 healthy runs: %d / %d", th0, g0),
		fmt.Sprintf("+%d threads", th1-th0))
	d.stop(b)
}

// ----- scan throughput

// scanPhase: a 200,000-entry tree (200 directories of 999 files) on tmpfs,
// scanned by stray_overlay_xattr (as --scan.root) and by
// opaque_propagation (as a lower layer of an overlay), beside getfattr -R
// over the same tree; each check's own duration from the JSON report.
func scanPhase(b *testing.B, bin string, reps int, rep *report) {
	n := testenv.NewScaleNode(b, filepath.Join(b.TempDir(), "node"))
	tree := filepath.Join(n.Dir, "tree")
	const dirs, files = 200, 999
	entries := dirs * (files + 1)
	for i := range dirs {
		d := filepath.Join(tree, fmt.Sprintf("d%03d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		for j := range files {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", j)), nil, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		if i%10 == 0 {
			testenv.Run(b, "setfattr", "-n", "trusted.overlay.opaque", "-v", "y", d)
		}
	}
	// opaque_propagation walks every layer that has one below it: the
	// tree goes over an empty bottom layer.
	bottom, upper, work, merged := filepath.Join(n.Dir, "bottom"), filepath.Join(n.Dir, "upper"), filepath.Join(n.Dir, "work"), filepath.Join(n.Dir, "merged")
	for _, d := range []string{bottom, upper, work, merged, n.Dir + "/none"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	common := []string{"--once", "--output", "json", "--scan.rate=0", "--path.kubelet", n.Dir + "/none",
		"--path.pod-logs", n.Dir + "/none", "--path.containerd-snapshots", n.Dir + "/none"}
	var stray, opaque, getfattr []time.Duration
	var strayEnts, opaqueEnts uint64
	for i := -1; i < reps; i++ {
		s := runOnce(b, bin, append(slices.Clone(common), "--scan.root", tree)...)
		g := timeCmd(b, nil, "getfattr", "-R", "-d", "-m", "-", "--absolute-names", tree)
		if err := syscall.Mount("overlay", merged, "overlay", 0, "lowerdir="+tree+":"+bottom+",upperdir="+upper+",workdir="+work); err != nil {
			b.Fatal(err)
		}
		o := runOnce(b, bin, common...)
		if err := syscall.Unmount(merged, 0); err != nil {
			b.Fatal(err)
		}
		if i < 0 {
			continue
		}
		stray, opaque, getfattr = append(stray, s.checks["stray_overlay_xattr"]), append(opaque, o.checks["opaque_propagation"]), append(getfattr, g.wall)
		strayEnts, opaqueEnts = s.entries, o.entries
	}
	rate := func(d time.Duration) float64 { return float64(entries) / d.Seconds() }
	g := rate(median(getfattr))
	base := fmt.Sprintf("`getfattr -R -d -m -` %s entries/s (%s)", thousands(int(g)), ms(median(getfattr)))
	rep.add(fmt.Sprintf("stray_overlay_xattr scan of a %s-entry tree (%s entries counted)", thousands(entries), thousands(int(strayEnts))),
		fmt.Sprintf("%s entries/s (%s)", thousands(int(rate(median(stray)))), ms(median(stray))), base, fmt.Sprintf("%.2f×", rate(median(stray))/g))
	rep.add(fmt.Sprintf("opaque_propagation scan of the same tree as an overlay layer (%s entries counted)", thousands(int(opaqueEnts))),
		fmt.Sprintf("%s entries/s (%s)", thousands(int(rate(median(opaque)))), ms(median(opaque))), base, fmt.Sprintf("%.2f×", rate(median(opaque))/g))
}

// ----- running things

type cmdResult struct {
	wall   time.Duration
	cpu    time.Duration // user and system time, of the command and the children it waited for
	code   int
	stdout []byte
}

// timeCmd runs a command to completion (at most 10 minutes) and times it
// from start to exit; stdout is kept when keep is non-nil.
func timeCmd(b *testing.B, keep *bytes.Buffer, name string, args ...string) cmdResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	if keep != nil {
		cmd.Stdout = keep
	}
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	if ctx.Err() != nil {
		b.Fatalf("%s %s: did not finish within 10 minutes", name, strings.Join(args, " "))
	}
	if code != 0 && filepath.Base(name) != "mountwatchd" && filepath.Base(name) != "time" {
		b.Fatalf("%s %s: exit %d: %s", name, strings.Join(args, " "), code, stderr.String())
	}
	r := cmdResult{wall: wall, code: code}
	if ps := cmd.ProcessState; ps != nil {
		r.cpu = ps.UserTime() + ps.SystemTime()
	}
	if keep != nil {
		r.stdout = keep.Bytes()
	}
	return r
}

// peakRSS runs a command under GNU time and returns its peak RSS (bytes)
// and exit code. The rusage of a child of this process is no use for that:
// Go starts children with CLONE_VM, and the kernel carries the high-water
// RSS of the shared address space (this benchmark's, hundreds of MiB at
// 50,000 mounts) across the exec into the child's maxrss.
func peakRSS(b *testing.B, name string, args ...string) (int64, int) {
	b.Helper()
	gnuTime := testenv.RequireCommand(b, "/usr/bin/time", "time")
	out := filepath.Join(b.TempDir(), "maxrss")
	r := timeCmd(b, nil, gnuTime, append([]string{"-f", "%M", "-o", out, "--", name}, args...)...)
	data, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	// GNU time notes a non-zero exit on a line of its own before %M.
	f := strings.Fields(string(data))
	kib, err := strconv.ParseInt(f[len(f)-1], 10, 64)
	if err != nil {
		b.Fatalf("GNU time wrote %q", data)
	}
	return kib * 1024, r.code
}

// onceResult is a --once run: wall time and what its JSON report says.
type onceResult struct {
	cmdResult
	status       string
	errors       []string
	longest      string // the check that took longest (they run at once)
	checks       map[string]time.Duration
	entries      uint64
	mountsInJSON int
}

func runOnce(b *testing.B, bin string, args ...string) onceResult {
	b.Helper()
	var out bytes.Buffer
	r := onceResult{cmdResult: timeCmd(b, &out, bin, args...), checks: map[string]time.Duration{}}
	var doc struct {
		Status     string `json:"status"`
		MountTable struct {
			Mounts int `json:"mounts"`
		} `json:"mount_table"`
		Checks []struct {
			Check    string  `json:"check"`
			Status   string  `json:"status"`
			Seconds  float64 `json:"duration_seconds"`
			Error    string  `json:"error"`
			Findings int     `json:"findings"`
		} `json:"checks"`
		Scan *struct {
			Entries uint64 `json:"entries_total"`
		} `json:"scan"`
	}
	if err := json.Unmarshal(r.stdout, &doc); err != nil {
		b.Fatalf("mountwatchd %v: exit %d, not JSON: %v\n%s", args, r.code, err, r.stdout)
	}
	r.status, r.mountsInJSON = doc.Status, doc.MountTable.Mounts
	for _, c := range doc.Checks {
		d := time.Duration(c.Seconds * float64(time.Second))
		r.checks[c.Check] = d
		if r.longest == "" || d > r.checks[r.longest] {
			r.longest = c.Check
		}
		if c.Error != "" {
			r.errors = append(r.errors, c.Check+": "+c.Error)
		}
	}
	if doc.Scan != nil {
		r.entries = doc.Scan.Entries
	}
	return r
}

func statusNote(r onceResult) string {
	if r.status == "ok" {
		return ""
	}
	return fmt.Sprintf(" (status %s: %s)", r.status, strings.Join(r.errors, "; "))
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// buildMountwatchd builds the binary as make build does (no race detector).
func buildMountwatchd(b *testing.B) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mountwatchd-bench")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "mountwatchd")
		out, err := exec.Command("go", "build", "-trimpath", "-o", binPath, "github.com/mountwatchd/mountwatchd/cmd/mountwatchd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%w\n%s", err, out)
		}
	})
	if buildErr != nil {
		b.Fatalf("build mountwatchd: %v", buildErr)
	}
	return binPath
}

// nodeExporter finds node_exporter, or installs nodeExporterVersion from
// the Go module proxy into the user's cache once. It returns "" and why
// when neither works: the row is then reported as not measured.
func nodeExporter(b *testing.B) (string, string) {
	if p := os.Getenv("MOUNTWATCHD_BENCH_NODE_EXPORTER"); p != "" {
		return p, ""
	}
	if p, err := exec.LookPath("node_exporter"); err == nil {
		return p, ""
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err.Error()
	}
	gobin := filepath.Join(cache, "mountwatchd-bench", "node_exporter-"+nodeExporterVersion)
	p := filepath.Join(gobin, "node_exporter")
	if _, err := os.Stat(p); err == nil {
		return p, ""
	}
	cmd := exec.Command("go", "install", "github.com/prometheus/node_exporter@"+nodeExporterVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Sprintf("go install github.com/prometheus/node_exporter@%s: %v: %s", nodeExporterVersion, err, lastLine(out))
	}
	return p, ""
}

// startNodeExporter runs node_exporter with only the filesystem collector
// on a loopback port, reading our own mount table: its filesystem
// collector reads <procfs>/1/mountinfo, and PID 1 is not in our mount
// namespace, so --path.procfs points at a directory whose "1" is
// /proc/self (node_exporter's own process, in our namespace).
func startNodeExporter(b *testing.B, bin, dir string) (*exec.Cmd, func() (time.Duration, error)) {
	fake := filepath.Join(dir, "ne-procfs")
	if err := os.MkdirAll(fake, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, l := range []string{"1", "self"} {
		if err := os.Symlink("/proc/self", filepath.Join(fake, l)); err != nil {
			b.Fatal(err)
		}
	}
	addr := testenv.FreeLoopbackAddr(b)
	cmd := exec.Command(bin, "--collector.disable-defaults", "--collector.filesystem", "--web.disable-exporter-metrics",
		"--web.listen-address="+addr, "--path.procfs="+fake, "--log.level=warn")
	cmd.Stderr = &testenv.SyncBuffer{}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := &http.Client{Timeout: 5 * time.Minute}
	scrape := func() (time.Duration, error) {
		st := time.Now()
		resp, err := c.Get("http://" + addr + "/metrics")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && !bytes.Contains(body, []byte("node_filesystem_size_bytes")) {
			err = fmt.Errorf("no node_filesystem_size_bytes in the scrape")
		}
		return time.Since(st), err
	}
	testenv.WaitUntil(b, 30*time.Second, "node_exporter to listen", func() bool {
		resp, err := c.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return cmd, scrape
}

// daemon is the built binary running as a daemon on a loopback port.
type daemon struct {
	cmd      *exec.Cmd
	base     string
	stderr   *testenv.SyncBuffer
	done     chan struct{} // closed when the process has exited
	waitErr  error
	stopOnce sync.Once
}

func startDaemon(b *testing.B, bin string, args ...string) *daemon {
	addr := testenv.FreeLoopbackAddr(b)
	cmd := exec.Command(bin, append([]string{"--web.listen-address", addr}, args...)...)
	d := &daemon{cmd: cmd, base: "http://" + addr, stderr: &testenv.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { d.waitErr = cmd.Wait(); close(d.done) }()
	b.Cleanup(func() { d.stop(b) })
	testenv.WaitUntil(b, 5*time.Minute, "the daemon's /healthz", func() bool {
		select {
		case <-d.done:
			b.Fatalf("daemon exited: %v\n%s", d.waitErr, d.stderr)
		default:
		}
		resp, err := http.Get(d.base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return d
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// stop sends SIGTERM and waits, killing it after 15 s; once.
func (d *daemon) stop(b *testing.B) {
	d.stopOnce.Do(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
			b.Logf("daemon did not stop within 15 s of SIGTERM")
		}
	})
}

func (d *daemon) metrics(b *testing.B) string {
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(d.base + "/metrics")
	if err != nil {
		b.Fatalf("scrape: %v\n%s", err, d.stderr)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return string(body)
}

// metric is the value of the exposition line that starts with series.
func metric(body, series string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, series+" ") || (strings.HasSuffix(series, "}") && strings.HasPrefix(l, series)) {
			v, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			return v
		}
	}
	return 0
}

// sumMetric sums every exposition line that starts with prefix.
func sumMetric(body, prefix string) float64 {
	var sum float64
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			v, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			sum += v
		}
	}
	return sum
}

// cpuNanos is the CPU time of a process's live threads (schedstat, ns).
func cpuNanos(b *testing.B, pid int) int64 {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		b.Fatal(err)
	}
	var sum int64
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // exited meanwhile
		}
		f := strings.Fields(string(data))
		if len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			sum += v
		}
	}
	return sum
}

func statusField(b *testing.B, pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func rssOf(b *testing.B, pid int) int64 { return statusField(b, pid, "VmRSS") * 1024 }

// peakRSSOf is pid's peak RSS (VmHWM) since it started or since
// resetPeakRSS.
func peakRSSOf(b *testing.B, pid int) int64 { return statusField(b, pid, "VmHWM") * 1024 }

// resetPeakRSS sets pid's VmHWM to its current RSS (clear_refs "5", Linux
// 4.0 and later), so that peakRSSOf says the peak of what follows.
func resetPeakRSS(b *testing.B, pid int) {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		b.Fatalf("reset the peak RSS of %d: %v", pid, err)
	}
}

// ----- the table

func printReport(b *testing.B, s settings, rep *report, took time.Duration) {
	var w strings.Builder
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	var uts syscall.Utsname
	_ = syscall.Uname(&uts)
	kernel := utsString(uts.Release[:])
	fmt.Fprintf(&w, "\nmountwatchd node-scale benchmark: %d CPUs (%s), kernel %s, %s; sizes %v, %d interleaved repetitions (medians), "+
		"idle window %s; took %s\n\n", runtime.NumCPU(), cpu, kernel, runtime.Version(), s.sizes, s.reps, s.idle, took.Round(time.Second))
	w.WriteString("| what | figure | baseline, same run | × baseline |\n|---|---|---|---|\n")
	for _, r := range rep.rows {
		fmt.Fprintf(&w, "| %s | %s | %s | %s |\n", r.what, r.figure, r.baseline, r.ratio)
	}
	fmt.Print(w.String())
	if p := os.Getenv("MOUNTWATCHD_BENCH_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(w.String()), 0o644); err != nil {
			b.Errorf("MOUNTWATCHD_BENCH_OUT: %v", err)
		}
	}
}

func utsString(a []int8) string {
	var out []byte
	for _, c := range a {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianInt(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f >= 100:
		return thousands(int(f+0.5)) + " ms"
	case f >= 10:
		return fmt.Sprintf("%.0f ms", f)
	}
	return fmt.Sprintf("%.1f ms", f)
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}
