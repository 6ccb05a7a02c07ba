// Command mountwatchd-kube tells the Kubernetes API server what mountwatchd
// finds: events on the pods a problem breaks, a node condition and an
// opt-in taint (internal/kubeapi). The daemon starts it when one of the
// --kube.* switches is on and talks to it over a pipe (internal/kubelink):
// snapshots of findings on its standard input, its metrics back on its
// standard output. It is not meant to be run by hand.
//
// It is a process of its own so that client-go, linked here only, costs
// the daemon nothing when reporting is off, and so that the API server
// being slow, down or refusing can never hold the daemon.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/version"
	"go.uber.org/zap"

	"github.com/mountwatchd/mountwatchd/internal/flagname"
	"github.com/mountwatchd/mountwatchd/internal/kubeapi"
	"github.com/mountwatchd/mountwatchd/internal/kubelink"
	"github.com/mountwatchd/mountwatchd/internal/logging"
)

// metricsEvery is how often the metrics go to the daemon (and at once
// after each snapshot).
const metricsEvery = 2 * time.Second

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var (
		cfg                      kubelink.Config
		level, format, logTarget string
	)
	app := kingpin.New("mountwatchd-kube", "Tells the Kubernetes API server what mountwatchd finds; started by mountwatchd with --kube.*.")
	app.UsageWriter(stderr).ErrorWriter(stderr).Terminate(nil)
	kubelink.AddFlags(app, &cfg)
	app.Flag(flagname.LogLevel, "Log level.").Default("info").EnumVar(&level, "debug", "info", "warn", "error")
	app.Flag(flagname.LogFormat, "Log format on stderr.").Default(logging.FormatJSON).EnumVar(&format, logging.Formats...)
	app.Flag(flagname.LogTarget, "Where to log.").Default(logging.TargetStderr).
		EnumVar(&logTarget, logging.TargetAuto, logging.TargetJournal, logging.TargetStderr)
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(stderr, "mountwatchd-kube: %v\n", err)
		return 2
	}
	if !cfg.Enabled() {
		fmt.Fprintln(stderr, "mountwatchd-kube: none of --kube.events, --kube.condition, --kube.taint: nothing to do")
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "mountwatchd-kube: %v\n", err)
		return 2
	}
	logger, err := logging.New(logging.Options{Level: level, Format: format, Target: logTarget, Stderr: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "mountwatchd-kube: %v\n", err)
		return 2
	}
	defer logger.Close()
	log := logger.With(zap.String("process", "mountwatchd-kube"))
	// The daemon stops this process (a word on its input); a terminal's or
	// systemd's signal to the whole group must not cut the last events.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)

	if err := dropCapabilities(); err != nil {
		log.Info("keeping the capabilities this process was started with", zap.Error(err))
	}
	api, err := kubeapi.NewClient(cfg.Kubeconfig, "mountwatchd/"+version.Version, cfg.Timeout)
	if err != nil {
		log.Error("Kubernetes API reporting", zap.Error(err))
		return 1
	}
	kubeapi.LogTo(log)
	reg := prometheus.NewRegistry()
	r := kubeapi.New(kubeapi.Config{Config: cfg, Log: log}, api)
	reg.MustRegister(r.Collectors()...)
	r.Start()

	out := &metricsOut{w: stdout, reg: reg}
	stopTicker := out.every(metricsEvery, log)
	clean, err := feed(kubelink.NewReader(stdin), r, out, log)
	stopTicker()
	ctx, cancel := context.WithTimeout(context.Background(), 2*cfg.Timeout)
	defer cancel()
	r.Stop(ctx, clean)
	if err := out.send(); err != nil && !errors.Is(err, syscall.EPIPE) {
		log.Debug("last metrics to the daemon", zap.Error(err))
	}
	if err != nil {
		log.Error("reading the daemon's snapshots", zap.Error(err))
		return 1
	}
	return 0
}

// feed hands the reporter each snapshot until the daemon stops (clean) or
// its end of the pipe closes.
func feed(in *kubelink.Reader, r *kubeapi.Reporter, out *metricsOut, log *zap.Logger) (clean bool, err error) {
	for {
		s, stop, err := in.Next()
		switch {
		case stop:
			return true, nil
		case errors.Is(err, io.EOF):
			log.Warn("the daemon's end of the pipe closed without a stop; clearing nothing")
			return false, nil
		case err != nil:
			return false, err
		}
		r.Publish(s)
		_ = out.send()
	}
}

// metricsOut writes the registry's metrics to the daemon, one frame at a
// time.
type metricsOut struct {
	mu  sync.Mutex
	w   io.Writer
	reg *prometheus.Registry
}

func (m *metricsOut) send() error {
	fams, err := m.reg.Gather()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, f := range fams {
		if _, err := expfmt.MetricFamilyToText(&buf, f); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return kubelink.WriteMetrics(m.w, buf.Bytes())
}

// every sends the metrics every d until the returned stop is called.
func (m *metricsOut) every(d time.Duration, log *zap.Logger) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := m.send(); err != nil {
					log.Debug("metrics to the daemon", zap.Error(err))
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
