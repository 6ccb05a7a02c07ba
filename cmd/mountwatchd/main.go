// Command mountwatchd finds mounts that look fine and are not: deleted
// mount roots, dead and hung FUSE daemons, shadowed mounts and overlay
// xattr anomalies. See README.md, and docs/ for each check, the flags,
// the metrics and the journal.
//
// This command only parses the flags, wires the packages under internal/
// together and decides how to log and exit; it finds nothing itself.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"
	"github.com/prometheus/common/version"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/cliflag"
	"github.com/mountwatchd/mountwatchd/internal/containerd"
	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/flagname"
	"github.com/mountwatchd/mountwatchd/internal/layout"
	"github.com/mountwatchd/mountwatchd/internal/logging"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/probe/probeflag"
	"github.com/mountwatchd/mountwatchd/internal/tableread"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
)

// Exit codes of --once, the node-problem-detector custom plugin contract.
const (
	exitOK       = 0
	exitProblems = 1
	exitUnknown  = 2
)

func main() {
	if isProbeHelper() {
		os.Exit(probe.ServeHelper(os.Stdin, os.Stdout))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	once      bool
	output    string
	mountinfo string
	host      mounts.Host
	logLevel  string
	logFormat string

	probe       probeflag.Flags
	scan        check.ScanFlags
	volumes     check.VolumeFlags
	daemon      daemonConfig
	remediation remediationConfig
	kube        kubeConfig
	installTo   string

	pidFlag *cliflag.IntValue // to tell --target.pid given from its default

	maxTableBytes units.Base2Bytes
	onceTimeout   time.Duration
}

// defaultOnceTimeout keeps --once below node-problem-detector's default
// custom plugin timeout (5s), with room for starting the process.
const defaultOnceTimeout = 4 * time.Second

func newApp(cfg *config, stdout, stderr io.Writer) *kingpin.Application {
	app := kingpin.New("mountwatchd", "Finds mounts that look fine and are not, and names the pod and volume they break. "+
		"Each check's runbook: https://github.com/mountwatchd/mountwatchd/tree/main/docs/checks.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.HelpFlag.Short('h')
	app.Version(version.Print("mountwatchd"))

	app.Flag(flagname.Once, "Check the node once, print a report and exit: 0 healthy, 1 problems found, 2 could not check.").
		BoolVar(&cfg.once)
	cliflag.Enum(app, flagname.Output, "Report format of --"+flagname.Once+": text or json.", "text", &cfg.output, "text", "json")
	app.Flag(flagname.Mountinfo, "Analyse a captured mountinfo FILE instead of the live system (implies --"+flagname.Once+"; - reads standard input); "+
		"checks that need the live system are skipped and listed.").PlaceHolder("FILE").SetValue(cliflag.NonEmpty(&cfg.mountinfo, flagname.Mountinfo))
	app.Flag(flagname.Procfs, "procfs mount point.").Default(mounts.DefaultProcfs).StringVar(&cfg.host.Procfs)
	app.Flag(flagname.MaxTableBytes, "Most bytes read from a mount table (live or --"+flagname.Mountinfo+"); a longer one is an error. A live table of 20,000 mounts is about 4MiB.").
		Default(units.Base2Bytes(mounts.DefaultMaxTableBytes).String()).BytesVar(&cfg.maxTableBytes)
	cfg.pidFlag = cliflag.Int(app, flagname.TargetPID, "Inspect the mount namespace of this PID (1 in a DaemonSet with hostPID); 0 for our own.",
		"0", &cfg.host.PID)
	app.Flag(flagname.Kubelet, "kubelet root directory, as the inspected namespace sees it (default: found from the mount table and the running kubelet's --root-dir, else "+
		mounts.DefaultKubeletRoot+"; see docs/operations.md).").PlaceHolder(mounts.DefaultKubeletRoot).SetValue(cliflag.NonEmpty(&cfg.host.KubeletRoot, flagname.Kubelet))
	app.Flag(flagname.PodLogs, "kubelet pod log directory (names pods by UID), as the inspected namespace sees it "+
		"(default: podLogsDir of the running kubelet's --config file, else "+mounts.DefaultPodLogDir+").").
		PlaceHolder("DIR").StringVar(&cfg.host.PodLogDir)
	probeflag.AddTimeoutFlag(app, &cfg.probe)
	app.Flag(flagname.OnceTimeout, "Time budget of --"+flagname.Once+", below node-problem-detector's default plugin timeout (5s): probes wait at most half of it, "+
		"and a scan cut short by it is a check error naming this flag.").Default(defaultOnceTimeout.String()).DurationVar(&cfg.onceTimeout)
	probeflag.AddFlags(app, &cfg.probe)
	check.AddScanFlags(app, &cfg.scan)
	addContainerdFlags(app, &cfg.host)
	check.AddVolumeFlags(app, &cfg.volumes)
	cliflag.Enum(app, flagname.LogLevel, "Log level: debug, info, warn, error.", "info", &cfg.logLevel, "debug", "info", "warn", "error")
	cliflag.Enum(app, flagname.LogFormat, "Log format on stderr: json, logfmt (key=value, as node_exporter) or console.", logging.FormatJSON, &cfg.logFormat, logging.Formats...)
	addDaemonFlags(app, &cfg.daemon)
	addRemediationFlags(app, &cfg.remediation)
	addKubeFlags(app, &cfg.kube)
	app.Flag(flagname.InstallTo, "Copy this binary to DIR/mountwatchd and exit (a node-problem-detector init container; see docs/deployment.md).").
		PlaceHolder("DIR").StringVar(&cfg.installTo)
	return app
}

func run(args []string, stdout, stderr io.Writer) int {
	var cfg config
	app := newApp(&cfg, stdout, stderr)
	exited := false
	app.Terminate(func(int) { exited = true }) // --help and --version
	if _, err := app.Parse(cliflag.JoinDashValues(app, args)); err != nil {
		fmt.Fprintf(stderr, "mountwatchd: %v; try --help\n", err)
		return exitUnknown
	}
	if exited {
		return exitOK
	}
	if cfg.installTo != "" {
		if err := installTo(cfg.installTo); err != nil {
			fmt.Fprintf(stderr, "mountwatchd: %v\n", err)
			return exitUnknown
		}
		return exitOK
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "mountwatchd: %v\n", err)
		return exitUnknown
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mountwatchd: %v\n", err)
		return exitUnknown
	}
	defer func() { _ = log.Sync() }()

	// This run's memory of what the node's kubelet and containerd
	// processes said: one for the daemon's life, or for one --once.
	cfg.host.Processes = layout.NewProcessCache()
	if cfg.onceMode() {
		return runOnce(context.Background(), cfg, log, stdout)
	}
	return runDaemon(cfg, stderr)
}

// validate checks, once and at start-up, every flag that kingpin cannot,
// and fills in what follows from them (the probed types, the table cap,
// the budgets of --once). Each concern's own validate names its flags;
// the first error found is the one reported.
func (cfg *config) validate() error {
	if err := cfg.probe.Validate(); err != nil {
		return err
	}
	if err := cfg.validateHost(); err != nil {
		return err
	}
	if err := cfg.remedyConfig(false).Validate(); err != nil {
		return err
	}
	if err := cfg.scan.Validate(); err != nil {
		return err
	}
	if err := cfg.volumes.Validate(); err != nil {
		return err
	}
	if cfg.onceMode() {
		return cfg.forOnce()
	}
	if err := cfg.kube.Validate(); err != nil { // the daemon's --kube.*
		return err
	}
	return cfg.daemon.validate()
}

// onceMode reports whether this run is one check of the node (--once, or
// --mountinfo, which implies it) rather than the daemon.
func (cfg *config) onceMode() bool { return cfg.once || cfg.mountinfo != "" }

// validateHost checks what says which namespace and table are inspected,
// and fills in cfg.host from them.
func (cfg *config) validateHost() error {
	if cfg.host.PID < 0 {
		return fmt.Errorf("--"+flagname.TargetPID+"=%d: want a PID, or 0 for our own namespace", cfg.host.PID)
	}
	if cfg.maxTableBytes <= 0 {
		return fmt.Errorf("--"+flagname.MaxTableBytes+"=%s: want a positive size", cfg.maxTableBytes)
	}
	cfg.host.MaxTableBytes = int64(cfg.maxTableBytes)
	if cfg.mountinfo != "" && cfg.pidFlag.Given() {
		return errors.New("--" + flagname.Mountinfo + " and --" + flagname.TargetPID + ": a captured table has no process to inspect; give one or the other")
	}
	return nil
}

// forOnce sets the budgets of --once: it answers within its budget and
// probes get half of it (its scan's budget and rate: check.ScanFlags).
func (cfg *config) forOnce() error {
	if cfg.onceTimeout <= 0 {
		return fmt.Errorf("--"+flagname.OnceTimeout+"=%s: want a positive duration", cfg.onceTimeout)
	}
	return cfg.probe.ForOnce(cfg.onceTimeout)
}

// addContainerdFlags defines where containerd keeps its root and its
// overlayfs snapshots, as the inspected namespace sees them; empty: found
// by package layout when the table is read.
func addContainerdFlags(app *kingpin.Application, h *mounts.Host) {
	app.Flag(flagname.ContainerdRoot, "containerd's root directory, as the inspected namespace sees it: opaque_propagation reads its content store and metadata (read only) to verify opaque markers against the image layers "+
		"(default: the running containerd's --root or config file, else the overlay layers in the mount table, else "+containerd.DefaultRoot+").").
		PlaceHolder(containerd.DefaultRoot).SetValue(cliflag.NonEmpty(&h.ContainerdRoot, flagname.ContainerdRoot))
	app.Flag(flagname.ContainerdSnapshots, "containerd overlayfs snapshotter's snapshots directory, against which relative lowerdirs are resolved, as the inspected namespace sees it "+
		"(default <"+flagname.ContainerdRoot+">/"+containerd.OverlayfsDir+"/snapshots when that root is given or named by containerd, else the overlay layers in the mount table show it).").
		PlaceHolder(mounts.DefaultContainerdSnapshots).SetValue(cliflag.NonEmpty(&h.ContainerdSnapshots, flagname.ContainerdSnapshots))
}

// checks builds the catalogue (every registered check, in report order)
// and the prober that makes their probe rounds. once gives the scanning
// checks the budget of one full pass.
func checks(cfg config, log *zap.Logger, live, once bool) ([]check.Check, *probe.Prober) {
	prober := probe.NewProber(cfg.probe.Config, newProbeFS(cfg, log, live))
	cc := &check.Config{
		Fusectl: cfg.probe.Fusectl,
		Once:    once,
		// One scan of the node's tasks per probe round, shared by both
		// probing checks.
		Tasks:      tasks.NewScanner(tasks.Config{Host: cfg.host, Fusectl: cfg.probe.Fusectl}),
		StuckAfter: cfg.probe.StuckAfterConfig(),
	}
	cfg.scan.Apply(cc)
	cfg.volumes.Apply(cc)
	if live {
		if err := probe.EnsureFusectl(cfg.probe.Fusectl, cfg.probe.MountFusectl); err != nil {
			cc.FusectlErr = err
			log.Debug("waiting requests of hung FUSE connections will not be reported", zap.Error(err))
		}
	}
	return check.Catalogue(cc), prober
}

// errOnceTimeout is the cause of --once's deadline: what a check cut short
// by it says.
var errOnceTimeout = errors.New("--" + flagname.OnceTimeout + " reached")

func runOnce(ctx context.Context, cfg config, log *zap.Logger, stdout io.Writer) int {
	// Keep a tenth of the budget (at most 250ms) to write the report.
	reserve := min(cfg.onceTimeout/10, 250*time.Millisecond)
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.onceTimeout-reserve,
		fmt.Errorf("%w (%s)", errOnceTimeout, cfg.onceTimeout))
	defer cancel()
	table := tableread.Reader{Source: onceSource(cfg)}
	snap, err := table.Read(ctx) // until ctx's deadline: classifying a live table reads kubelet's files
	if err != nil {
		if cfg.output == "json" {
			_ = export.WriteJSON(stdout, export.ErrorDocument(err, time.Now()))
		} else {
			fmt.Fprintln(stdout, export.ErrorSummary(err))
			fmt.Fprintln(stdout, export.Printable(err.Error()))
		}
		return exitUnknown
	}

	export.LogLayout(log, zapcore.DebugLevel, snap.Layout)
	table.LogParseErrors(snap, log)
	cs, prober := checks(cfg, log, snap.Live, true)
	rep := (&check.Runner{Checks: cs, Prober: prober, Concurrent: true}).Run(ctx, snap)
	onceRemedy(ctx, cfg, prober, log, rep)             // --remediation.mode; before the findings are stamped
	check.NewTracker().Stamp(snap.Taken, rep.Findings) // every problem is new to --once
	for _, c := range rep.Checks {
		if c.Status == finding.StatusError {
			log.Error("check failed", zap.String("check", string(c.Check)), zap.String("error", c.Error))
		}
	}
	if cfg.output == "json" {
		err = export.WriteJSON(stdout, export.NewDocument(rep))
	} else {
		err = export.WriteText(stdout, rep)
	}
	if err != nil {
		return exitUnknown
	}
	switch rep.Status() {
	case finding.StatusProblems:
		return exitProblems
	case finding.StatusOK:
		return exitOK
	}
	return exitUnknown
}

// onceSource is the table --once reads: the captured one --mountinfo
// names, else the inspected namespace's.
func onceSource(cfg config) tableread.Source {
	if cfg.mountinfo != "" {
		return tableread.Captured(cfg.mountinfo, cfg.host)
	}
	return tableread.Live(cfg.host)
}

func newLogger(cfg config, stderr io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.logLevel)
	if err != nil {
		return nil, fmt.Errorf("--"+flagname.LogLevel+": %w", err)
	}
	core, err := logging.StderrCore(level, cfg.logFormat, stderr)
	if err != nil {
		return nil, err
	}
	return zap.New(core), nil
}
