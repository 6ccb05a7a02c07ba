// Command mountwatchd finds mounts that look fine and are not: deleted
// mount roots, dead and hung FUSE daemons, shadowed mounts and overlay
// xattr anomalies. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/probe"
)

// Exit codes of --once, the node-problem-detector custom plugin contract.
const (
	exitOK       = 0
	exitProblems = 1
	exitUnknown  = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	once      bool
	output    string
	mountinfo string
	host      probe.Host
	logLevel  string
	logFormat string
	daemon    daemonConfig
}

func newApp(cfg *config, stdout, stderr io.Writer) *kingpin.Application {
	app := kingpin.New("mountwatchd", "Finds mounts that look fine and are not, and names the pod and volume they break. "+
		"See README.md for the checks.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.HelpFlag.Short('h')
	app.Version(version.Print("mountwatchd"))

	app.Flag("once", "Check the node once, print a report and exit: 0 healthy, 1 problems found, 2 could not check.").
		BoolVar(&cfg.once)
	app.Flag("output", "Report format of --once: text or json.").Default("text").EnumVar(&cfg.output, "text", "json")
	app.Flag("mountinfo", "Analyse a captured mountinfo FILE instead of the live system (implies --once); "+
		"checks that need the live system are skipped and listed.").PlaceHolder("FILE").StringVar(&cfg.mountinfo)
	app.Flag("path.procfs", "procfs mount point.").Default(probe.DefaultProcfs).StringVar(&cfg.host.Procfs)
	app.Flag("target.pid", "Inspect the mount namespace of this PID (1 in a DaemonSet with hostPID); 0 for our own.").
		Default("0").IntVar(&cfg.host.PID)
	app.Flag("path.kubelet", "kubelet root directory, as the inspected namespace sees it.").
		Default(probe.DefaultKubeletRoot).StringVar(&cfg.host.KubeletRoot)
	app.Flag("path.pod-logs", "kubelet pod log directory (names pods by UID), as the inspected namespace sees it.").
		Default(probe.DefaultPodLogDir).StringVar(&cfg.host.PodLogDir)
	app.Flag("log.level", "Log level: debug, info, warn, error.").Default("info").EnumVar(&cfg.logLevel, "debug", "info", "warn", "error")
	app.Flag("log.format", "Log format on stderr: json or console.").Default("json").EnumVar(&cfg.logFormat, "json", "console")
	addDaemonFlags(app, &cfg.daemon)
	return app
}

func run(args []string, stdout, stderr io.Writer) int {
	var cfg config
	app := newApp(&cfg, stdout, stderr)
	exited := false
	app.Terminate(func(int) { exited = true }) // --help and --version
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(stderr, "mountwatchd: %v; try --help\n", err)
		return exitUnknown
	}
	if exited {
		return exitOK
	}
	if cfg.host.PID < 0 {
		fmt.Fprintf(stderr, "mountwatchd: --target.pid=%d: want a PID, or 0 for our own namespace\n", cfg.host.PID)
		return exitUnknown
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mountwatchd: %v\n", err)
		return exitUnknown
	}
	defer func() { _ = log.Sync() }()

	if cfg.once || cfg.mountinfo != "" {
		return runOnce(context.Background(), cfg, log, stdout)
	}
	return runDaemon(cfg, stderr)
}

// checks is the catalogue, in report order.
func checks() []probe.Check {
	return []probe.Check{
		probe.DeletedRootCheck{},
	}
}

func runOnce(ctx context.Context, cfg config, log *zap.Logger, stdout io.Writer) int {
	var (
		snap *probe.Snapshot
		err  error
	)
	if cfg.mountinfo != "" {
		snap, err = probe.ReadSnapshotFile(cfg.mountinfo, cfg.host.KubeletRoot)
	} else {
		snap, err = probe.ReadSnapshot(cfg.host)
	}
	if err != nil {
		if cfg.output == "json" {
			_ = export.WriteJSON(stdout, export.ErrorDocument(err, time.Now()))
		} else {
			fmt.Fprintln(stdout, export.ErrorSummary(err))
			fmt.Fprintln(stdout, export.Printable(err.Error()))
		}
		return exitUnknown
	}

	for _, pe := range snap.ParseErrors {
		log.Warn("mount table line not parsed", zap.String("table", snap.Source), zap.Int("line", pe.Line), zap.String("error", pe.Err))
	}
	runner := &probe.Runner{Checks: checks()}
	rep := runner.Run(ctx, snap)
	for _, c := range rep.Checks {
		if c.Status == probe.StatusError {
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
	case probe.StatusProblems:
		return exitProblems
	case probe.StatusOK:
		return exitOK
	}
	return exitUnknown
}

func newLogger(cfg config, stderr io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.logLevel)
	if err != nil {
		return nil, fmt.Errorf("--log.level: %w", err)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	var encoder zapcore.Encoder
	switch cfg.logFormat {
	case "json":
		encoder = zapcore.NewJSONEncoder(enc)
	case "console":
		encoder = zapcore.NewConsoleEncoder(enc)
	default:
		return nil, errors.New("--log.format: want json or console")
	}
	return zap.New(zapcore.NewCore(encoder, zapcore.AddSync(stderr), level)), nil
}
