package export

import (
	"maps"
	"slices"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/flagname"
	"github.com/mountwatchd/mountwatchd/internal/layout"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
	"github.com/prometheus/client_golang/prometheus"
)

// State is what the daemon knows at one moment: the current merged report
// and the daemon's own counters. The daemon publishes a new State after each
// change; the collector reads the latest one and never waits for a check.
type State struct {
	// Report is the current report: the latest mount table with the latest
	// findings of every check. Nil until the mount table was first read.
	Report *finding.Report
	// Checks has one entry per registered check, in catalogue order.
	Checks []CheckState
	// TableReads and TableReadErrors count mount table reads since start;
	// TableEvents counts change notifications from the kernel.
	TableReads, TableReadErrors, TableEvents uint64
	// TableReadOK is true when the latest read of the mount table
	// succeeded: false before the first and after a failed one.
	TableReadOK bool
	// LastComplete is when every registered check last had a result over
	// the current mount table (zero before the first).
	LastComplete time.Time
}

// CheckState is how one check has been doing since start.
type CheckState struct {
	ID       finding.ID
	Kind     finding.Kind
	Runs     uint64
	Errors   uint64
	Duration time.Duration  // of the last run
	LastRun  time.Time      // end of the last run; zero before the first
	Status   finding.Status // of the last run; empty before the first
}

// DefaultMaxProblemSeries is the default cap on mountwatchd_problem series.
const DefaultMaxProblemSeries = 1000

// problemLabels are the labels of one active problem. Values are bounded by
// what is mounted; error text never goes into a label. directory is the
// directory the problem is about (finding.Finding.Directory, else the mount
// point): bounded by the node's mounts, volumes, scan roots and image
// directories, never a file below them. csi_driver is the CSI driver of the
// volume, "" when the finding has none: bounded by the drivers installed.
var problemLabels = []string{"check", "severity", "mountpoint", "directory", "fstype", "source", "pod_uid", "pod_namespace", "pod_name", "volume", "csi_driver"}

const ns = "mountwatchd"

// connLabels are the labels of a connection's series: its major:minor and
// the type and source of its first mount in the table.
var connLabels = []string{"connection", "fstype", "source"}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, nil)
}

var (
	descProblems = desc("problems", "Active problems by check and severity; every registered check and severity is always present (0 when healthy).",
		"check", "severity")
	descProblem = desc("problem", "One series per active problem (value 1), labelled with the mount, the directory it is about, the pod, the volume and its CSI driver; capped by --"+flagname.MaxProblemSeries+".",
		problemLabels...)
	descFirstSeen = desc("problem_first_seen_timestamp_seconds", "When this process first saw the active problem (Unix time).",
		problemLabels...)
	descDroppedNow = desc("problem_series_dropped", "Active problems left out of mountwatchd_problem in this scrape because of --"+flagname.MaxProblemSeries+".")
	descDropped    = desc("problem_series_dropped_total", "Problem series left out because of --"+flagname.MaxProblemSeries+", summed over scrapes.")
	descMounts     = desc("mounts", "Mounts in the current mount table by filesystem type.", "fstype")
	descParseErrs  = desc("mount_table_parse_errors", "Lines of the current mount table that could not be parsed (and were left out).")
	descReads      = desc("mount_table_reads_total", "Mount table reads since start.")
	descReadErrs   = desc("mount_table_read_errors_total", "Mount table reads that failed since start.")
	descReadOK     = desc("mount_table_read_success", "1 if the latest read of the mount table succeeded, 0 if it failed or none has succeeded yet "+
		"(then every other value describes an older table, or none).")
	descEvents     = desc("mount_table_change_events_total", "Mount table change notifications from the kernel (poll on mountinfo) since start.")
	descDuration   = desc("check_duration_seconds", "Duration of the last run of the check.", "check", "kind")
	descRuns       = desc("check_runs_total", "Runs of the check since start.", "check", "kind")
	descErrors     = desc("check_errors_total", "Runs of the check that ended in an error since start.", "check", "kind")
	descSuccess    = desc("check_success", "1 if the last run of the check finished without error, 0 if not or not run yet.", "check", "kind")
	descLastRun    = desc("check_last_run_timestamp_seconds", "When the last run of the check ended (Unix time); absent before the first run.", "check", "kind")
	descComplete   = desc("last_complete_check_timestamp_seconds", "When every registered check last had a result over the current mount table (Unix time); absent before the first.")
	descProbeConns = desc("probe_connections", "Distinct filesystems (major:minor) probed in the last probe run.")
	descBlocked    = desc("probes_blocked", "Probes blocked in the kernel now (at most one per connection).")
	descNotProbed  = desc("probes_not_probed", "Connections not probed in the last run: one probe already blocked on it, or the cap was reached.")
	descProbes     = desc("probes_total", "Probes started since start.")
	descTimeouts   = desc("probe_timeouts_total", "Probes that did not answer within the probe timeout since start.")
	descStuck      = desc("stuck_tasks", "Tasks (threads) of the node found waiting in the kernel on a FUSE or network filesystem in the last probe run.")
	descStuckUnatt = desc("stuck_tasks_unattributed", "Of mountwatchd_stuck_tasks, those whose connection the kernel does not say (no descriptor, and several FUSE connections with requests waiting).")
	descConnStuck  = desc("connection_stuck_tasks", "Tasks waiting in the kernel on this connection (major:minor) in the last probe run; a series per connection with tasks waiting.",
		connLabels...)
	descConnSince = desc("connection_stuck_tasks_first_seen_timestamp_seconds", "When this process first saw the longest waiting of the connection's stuck tasks (Unix time); the kernel does not say when a wait began.",
		connLabels...)
	descTaskScanOK = desc("task_scan_success", "1 if the last scan of the node's tasks examined every task, 0 if it failed or stopped at its cap.")
	descScanEnts   = desc("scan_entries_total", "Entries examined by tree scans since start.")
	descScanPasses = desc("scan_passes_total", "Complete scan passes over every root since start.")
	descScanBudget = desc("scan_budget_exhausted_total", "Scan runs that stopped at the budget, to resume on the next run, since start.")
	descScanDone   = desc("scan_complete", "1 if the last scan run finished a pass, 0 if it stopped at the budget.")
	descTableSize  = desc("mount_table_size", "Mounts in the current mount table (lines, parsed or not), as mount_leak counts them.")
	descTableMax   = desc("mount_table_max", "The inspected host's fs.mount-max: at it, every new mount in the namespace fails; absent when not known.")
	descTableGrow  = desc("mount_table_growth", "Mounts in the current table less those in the first table this process read (negative when it shrank).")
	descLayout     = desc("layout_info", "Where kubelet and containerd keep their state as the current table was checked (value 1): dir is kubelet_root, containerd_root "+
		"or containerd_snapshots; source says what decided it (flag, command line, config file, mount table, derived, default).", "dir", "path", "source")
	descLayoutCand = desc("layout_candidates", "How many different directories the mount table showed for dir when it showed more than one (0 otherwise); with source default, none was chosen.", "dir")

	allDescs = []*prometheus.Desc{descProblems, descProblem, descFirstSeen, descDroppedNow, descDropped, descMounts,
		descParseErrs, descReads, descReadErrs, descReadOK, descEvents, descDuration, descRuns, descErrors, descSuccess, descLastRun,
		descComplete, descProbeConns, descBlocked, descNotProbed, descProbes, descTimeouts, descScanEnts, descScanPasses,
		descScanBudget, descScanDone, descTableSize, descTableMax, descTableGrow, descLayout, descLayoutCand,
		descStuck, descStuckUnatt, descConnStuck, descConnSince, descTaskScanOK}
)

// Metrics writes the metrics of one State (collectState), for the
// Exposition, which encodes them once per published State. It only reads
// the immutable State: it never runs a check, touches a mount or waits for
// the daemon's loop.
type Metrics struct {
	maxSeries int
}

// newMetrics returns the writer of a State's metrics; maxProblemSeries
// caps the per-problem series (0: no series).
func newMetrics(maxProblemSeries int) *Metrics {
	return &Metrics{maxSeries: max(maxProblemSeries, 0)}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// collectState writes every metric that is a function of st alone (all
// but mountwatchd_problem_series_dropped_total, which sums over scrapes)
// and returns how many problem series the cap left out.
func (m *Metrics) collectState(ch chan<- prometheus.Metric, st *State) (dropped int) {
	dropped = m.collectProblems(ch, st)

	counter(ch, descReads, st.TableReads)
	counter(ch, descReadErrs, st.TableReadErrors)
	readOK := 0.0
	if st.TableReadOK {
		readOK = 1
	}
	gauge(ch, descReadOK, readOK)
	counter(ch, descEvents, st.TableEvents)
	if !st.LastComplete.IsZero() {
		gauge(ch, descComplete, unix(st.LastComplete))
	}
	for _, c := range st.Checks {
		id, kind := string(c.ID), c.Kind.String()
		gauge(ch, descDuration, c.Duration.Seconds(), id, kind)
		counter(ch, descRuns, c.Runs, id, kind)
		counter(ch, descErrors, c.Errors, id, kind)
		ok := 0.0
		if c.Status == finding.StatusOK || c.Status == finding.StatusProblems {
			ok = 1
		}
		gauge(ch, descSuccess, ok, id, kind)
		if !c.LastRun.IsZero() {
			gauge(ch, descLastRun, unix(c.LastRun), id, kind)
		}
	}

	rep := st.Report
	if rep == nil {
		return dropped
	}
	if s := rep.Snapshot; s != nil {
		byType := map[string]int{}
		for _, mt := range s.Mounts {
			byType[mt.FSType]++
		}
		for t, n := range byType {
			gauge(ch, descMounts, float64(n), Printable(t))
		}
		gauge(ch, descParseErrs, float64(s.ParseErrorTotal()))
		for _, d := range []struct {
			name string
			dir  layout.Dir
		}{{"kubelet_root", s.Layout.Kubelet}, {"containerd_root", s.Layout.ContainerdRoot}, {"containerd_snapshots", s.Layout.ContainerdSnapshots}} {
			if d.dir.Path == "" {
				continue
			}
			gauge(ch, descLayout, 1, d.name, Printable(d.dir.Path), string(d.dir.Source))
			gauge(ch, descLayoutCand, float64(len(d.dir.Candidates)), d.name)
		}
	}
	if p := rep.Probe; p != nil {
		gauge(ch, descProbeConns, float64(p.Connections))
		gauge(ch, descBlocked, float64(p.Blocked))
		gauge(ch, descNotProbed, float64(p.NotProbed))
		counter(ch, descProbes, p.Probes)
		counter(ch, descTimeouts, p.Timeouts)
	}
	if t := rep.Table; t != nil {
		gauge(ch, descTableSize, float64(t.Size))
		gauge(ch, descTableGrow, float64(t.Growth))
		if t.MountMax > 0 {
			gauge(ch, descTableMax, float64(t.MountMax))
		}
	}
	if tr := rep.Tasks; tr != nil {
		collectTasks(ch, tr, rep.Snapshot)
	}
	if s := rep.Scan; s != nil {
		counter(ch, descScanEnts, s.Entries)
		counter(ch, descScanPasses, s.Passes)
		counter(ch, descScanBudget, s.BudgetExhausted)
		done := 0.0
		if s.Complete {
			done = 1
		}
		gauge(ch, descScanDone, done)
	}
	return dropped
}

// collectProblems writes the counts (always, for every check and severity)
// and one series per active problem, most severe first, deduplicated by
// label set and capped; it returns how many series the cap left out.
func (m *Metrics) collectProblems(ch chan<- prometheus.Metric, st *State) int {
	type key struct{ check, sev string }
	counts := map[key]int{}
	var findings []finding.Finding
	if st.Report != nil {
		findings = st.Report.Findings
	}
	for i := range findings {
		counts[key{string(findings[i].Check), string(findings[i].Severity)}]++
	}
	ids := make([]finding.ID, 0, len(st.Checks))
	for _, c := range st.Checks {
		ids = append(ids, c.ID)
	}
	for i := range findings { // a finding of a check not registered (should not happen) still counts
		if !slices.Contains(ids, findings[i].Check) {
			ids = append(ids, findings[i].Check)
		}
	}
	for _, id := range ids {
		for _, sev := range finding.Severities {
			gauge(ch, descProblems, float64(counts[key{string(id), string(sev)}]), string(id), string(sev))
		}
	}

	// Findings are sorted most severe first, so the cap drops the least
	// severe. The same mount point can be mounted twice (two mount IDs):
	// one series per label set, first seen the earliest.
	type series struct {
		labels    []string
		firstSeen time.Time
	}
	var out []series
	index := map[string]int{}
	dropped := 0
	for i := range findings {
		f := &findings[i]
		dir := f.Directory
		if dir == "" {
			dir = f.MountPoint
		}
		labels := []string{string(f.Check), string(f.Severity), Printable(f.MountPoint), Printable(dir), Printable(f.FSType),
			Printable(f.Source), Printable(f.PodUID), Printable(f.PodNamespace), Printable(f.PodName), Printable(f.Volume), Printable(f.CSIDriver)}
		k := joinKey(labels)
		if j, ok := index[k]; ok {
			if j >= 0 && f.FirstSeen.Before(out[j].firstSeen) {
				out[j].firstSeen = f.FirstSeen
			}
			continue
		}
		if len(out) >= m.maxSeries {
			index[k] = -1
			dropped++
			continue
		}
		index[k] = len(out)
		out = append(out, series{labels, f.FirstSeen})
	}
	for _, s := range out {
		gauge(ch, descProblem, 1, s.labels...)
		gauge(ch, descFirstSeen, unix(s.firstSeen), s.labels...)
	}
	gauge(ch, descDroppedNow, float64(dropped))
	return dropped
}

func joinKey(labels []string) string {
	n := 0
	for _, l := range labels {
		n += len(l) + 1
	}
	b := make([]byte, 0, n)
	for _, l := range labels {
		b = append(b, l...)
		b = append(b, 0)
	}
	return string(b)
}

// collectTasks writes the counts of stuck tasks, for the node and per
// connection.
func collectTasks(ch chan<- prometheus.Metric, tr *tasks.Report, s *mounts.Snapshot) {
	ok := 0.0
	if tr.Err == nil && !tr.Truncated {
		ok = 1
	}
	gauge(ch, descTaskScanOK, ok)
	if tr.Err != nil {
		return
	}
	gauge(ch, descStuck, float64(tr.Stuck))
	gauge(ch, descStuckUnatt, float64(tr.Unattributed))
	for _, dev := range slices.Sorted(maps.Keys(tr.Conns)) {
		c := tr.Conns[dev]
		fstype, source := "", ""
		if s != nil {
			if ms := s.ByDev(dev); len(ms) > 0 {
				fstype, source = ms[0].FSType, ms[0].Source
			}
		}
		labels := []string{dev, Printable(fstype), Printable(source)}
		gauge(ch, descConnStuck, float64(c.Tasks), labels...)
		gauge(ch, descConnSince, unix(c.Since), labels...)
	}
}
