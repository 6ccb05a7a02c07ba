package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	"go.uber.org/zap"

	"github.com/mountwatchd/mountwatchd/internal/cliflag"
	"github.com/mountwatchd/mountwatchd/internal/daemon"
	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/flagname"
	"github.com/mountwatchd/mountwatchd/internal/logging"
)

// defaultListen is mountwatchd's port, 9842 (unused in the Prometheus
// default port allocations wiki as of this writing).
const defaultListen = ":9842"

type daemonConfig struct {
	web              *web.FlagConfig
	telemetryPath    string
	maxProblemSeries int
	interval         time.Duration
	probeInterval    time.Duration
	scanInterval     time.Duration
	logTarget        string
}

func addDaemonFlags(app *kingpin.Application, c *daemonConfig) {
	c.web = kingpinflag.AddFlags(app, defaultListen)
	app.Flag(flagname.TelemetryPath, "Path under which to expose metrics.").Default("/metrics").StringVar(&c.telemetryPath)
	cliflag.Int(app, flagname.MaxProblemSeries, "Most mountwatchd_problem series exposed; the least severe beyond it are counted in mountwatchd_problem_series_dropped.",
		fmt.Sprint(export.DefaultMaxProblemSeries), &c.maxProblemSeries)
	app.Flag(flagname.Interval, "Re-read the mount table at least this often (it is also re-read as soon as the kernel reports a change).").
		Default(daemon.DefaultInterval.String()).DurationVar(&c.interval)
	app.Flag(flagname.ProbeInterval, "Run the checks that probe mounts (stat, statfs) this often.").
		Default(daemon.DefaultProbeInterval.String()).DurationVar(&c.probeInterval)
	app.Flag(flagname.ScanInterval, "Run the checks that scan trees inside mounts this often.").
		Default(daemon.DefaultScanInterval.String()).DurationVar(&c.scanInterval)
	cliflag.Enum(app, flagname.LogTarget, "Where the daemon logs: auto (journald under systemd, else stderr), journald or stderr.",
		logging.TargetAuto, &c.logTarget, logging.TargetAuto, logging.TargetJournal, logging.TargetStderr)
}

// validate checks the daemon's intervals (config.validate, at start-up).
func (c daemonConfig) validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--" + flagname.Interval, c.interval}, {"--" + flagname.ProbeInterval, c.probeInterval}, {"--" + flagname.ScanInterval, c.scanInterval}} {
		if d.v <= 0 {
			return fmt.Errorf("%s=%s: want a positive duration", d.name, d.v)
		}
	}
	return nil
}

// daemonGCPercent is the daemon's GOGC unless the environment sets one. Its
// live heap is small and steady (about 12 MB at 10,000 mounts: the table,
// the exposition's encoder, the first-seen map), and Go's default lets the
// heap grow to twice what a collection found live, with the peak coming
// when a collection starts during a burst (the table's re-read, a probe
// round, a scrape). At 50 its peak RSS at 10,000 mounts fell from 48 to 42
// MiB for 0.06% more of a core; with the exposition's one DEFLATE writer,
// to 39 MiB from 47 (BENCHMARKS.md).
const daemonGCPercent = 50

// collectSooner sets the daemon's GOGC to daemonGCPercent, unless GOGC is
// in the environment: an operator's choice wins.
func collectSooner() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(daemonGCPercent)
	}
}

// runDaemon runs until SIGTERM or SIGINT: exit 0 on a clean stop, 2 when it
// cannot start (the listen address is taken; its flags were validated by
// config.validate).
func runDaemon(cfg config, stderr io.Writer) int {
	dc := cfg.daemon
	logger, err := logging.New(logging.Options{Level: cfg.logLevel, Format: cfg.logFormat, Target: dc.logTarget,
		PriorityField: export.PriorityField, Stderr: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "mountwatchd: %v\n", err)
		return exitUnknown
	}
	defer logger.Close()
	log := logger.Logger
	collectSooner()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	watchdog, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog setting not understood; not petting it", zap.Error(err))
	}
	notify := func(state string) error {
		_, err := sddaemon.SdNotify(false, state)
		return err
	}
	// /metrics: the published state's series are encoded once per state
	// (export.Exposition); the runtime's, the process's and promhttp's own
	// metrics are gathered from reg on each scrape and merged in.
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		versioncollector.NewCollector("mountwatchd"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	expo := export.NewExposition(dc.maxProblemSeries, reg)
	publish, stopKube, err := startKube(cfg, stderr, log, reg, expo.Publish)
	if err != nil {
		log.Error("Kubernetes API reporting", zap.Error(err))
		return exitUnknown
	}
	defer stopKube()
	cs, prober := checks(cfg, log, true, false)
	dcfg := daemon.Config{
		Host: cfg.host, Checks: cs, Prober: prober,
		Interval: dc.interval, ProbeInterval: dc.probeInterval, ScanInterval: dc.scanInterval,
		Log: log, Notify: notify, Watchdog: watchdog, Publish: publish,
	}
	if rem := newRemedy(cfg, prober, log, false); rem != nil { // --remediation.mode
		reg.MustRegister(rem.Actions)
		dcfg.AfterProbe = rem.Run
	}
	d := daemon.New(dcfg)
	mux := http.NewServeMux()
	mux.Handle(dc.telemetryPath, promhttp.InstrumentMetricHandler(reg, expo))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := d.Healthy(time.Now())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, why)
	})
	if dc.telemetryPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name: "mountwatchd", Description: "Finds mounts that look fine and are not", Version: versionString(),
			Links: []web.LandingLinks{{Address: dc.telemetryPath, Text: "Metrics"}, {Address: "/healthz", Text: "Health"}},
		})
		if err != nil {
			log.Error("landing page", zap.Error(err))
			return exitUnknown
		}
		mux.Handle("/", landing)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- web.ListenAndServe(srv, dc.web, logging.Slog(log)) }()

	loopErr := make(chan error, 1)
	go func() { loopErr <- d.Run(ctx) }()
	log.Info("mountwatchd started", zap.String("version", versionString()), zap.String("table", cfg.host.MountinfoPath()),
		zap.Duration("interval", dc.interval), zap.Duration("probe_interval", dc.probeInterval),
		zap.Duration("scan_interval", dc.scanInterval), zap.Bool("journal", logger.Journal), zap.Duration("watchdog", watchdog))

	code := exitOK
	select {
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("web server failed", zap.Error(err))
			code = exitUnknown
		}
		stop()
		if err := <-loopErr; err != nil {
			log.Error("loop failed", zap.Error(err))
		}
	case err := <-loopErr:
		if err != nil {
			log.Error("loop failed", zap.Error(err))
			code = exitUnknown
		}
	}
	_, _ = sddaemon.SdNotify(false, "STOPPING=1")
	// Scrapes answer from memory: a second is plenty for those in flight.
	// Connections a client opened but never used count as busy for 5s in
	// Shutdown, so close whatever is left rather than wait for them.
	shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		_ = srv.Close()
	}
	log.Info("mountwatchd stopped")
	return code
}

// versionString is the version the Makefile's ldflags set.
func versionString() string {
	v, r := version.Version, version.Revision
	if v == "" {
		v = "dev"
	}
	if r == "" {
		r = "unknown"
	}
	return v + " (revision " + r + ")"
}
