package main

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mountwatchd/mountwatchd/internal/cliflag"
	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/flagname"
	"github.com/mountwatchd/mountwatchd/internal/logging"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/remedy"
)

// remediationConfig are the flags of the one action (package remedy).
type remediationConfig struct {
	mode       string
	fstypes    string
	hungFor    time.Duration
	hungForSet bool
	interval   time.Duration
	maxPerHour int
}

func addRemediationFlags(app *kingpin.Application, rc *remediationConfig) {
	cliflag.Enum(app, flagname.RemediationMode, "Abort hung FUSE connections (echo 1 > <fusectl>/<N>/abort of the inspected namespace), which frees every task stuck on them: "+
		"off, dry-run (say what would be done, change nothing) or on. Never an unmount, a remount or a kill. See README.md.",
		string(remedy.Off), &rc.mode, remedy.Modes...)
	app.Flag(flagname.RemediationFSTypes, "Comma-separated FUSE types remediation may abort (fuse.* matches every FUSE subtype); FUSE types only.").
		Default(strings.Join(remedy.DefaultFSTypes, ",")).StringVar(&rc.fstypes)
	app.Flag(flagname.RemediationHungFor, "Abort a connection only once its probe has been blocked this long, continuously: long enough that a healthy but slow server is never touched. "+
		"--"+flagname.Once+" sees one probe, not a duration: it applies this only when given.").
		Default(remedy.DefaultHungFor.String()).IsSetByUser(&rc.hungForSet).DurationVar(&rc.hungFor)
	app.Flag(flagname.RemediationInterval, "At most one abort per this interval on the node.").
		Default(remedy.DefaultInterval.String()).DurationVar(&rc.interval)
	cliflag.Int(app, flagname.RemediationMaxPerHour, "At most this many aborts on the node in any hour; past it, a remediation_held warning says remediation is held back.",
		strconv.Itoa(remedy.DefaultMaxPerHour), &rc.maxPerHour)
}

// remedyConfig is the package's configuration from the flags; once for
// --once, which applies --remediation.hung-for only when given.
func (cfg config) remedyConfig(once bool) remedy.Config {
	rc := cfg.remediation
	var types []string
	for _, t := range strings.Split(rc.fstypes, ",") {
		if t = strings.TrimSpace(t); t != "" {
			types = append(types, t)
		}
	}
	return remedy.Config{Mode: remedy.Mode(rc.mode), FSTypes: types, HungFor: rc.hungFor, ApplyHungFor: !once || rc.hungForSet,
		Interval: rc.interval, MaxPerHour: rc.maxPerHour, StateDir: cfg.probe.StateDir, Fusectl: cfg.probe.Fusectl, Once: once}
}

// newRemedy returns the remediation of the prober's rounds, nil when it is
// off. Its fresh probes go through a helper of their own, without a state
// directory: the prober's record of its stuck probe stays its own.
func newRemedy(cfg config, prober *probe.Prober, log *zap.Logger, once bool) *remedy.Remedy {
	rc := cfg.remedyConfig(once)
	if rc.Mode == remedy.Off {
		return nil
	}
	if err := probe.PrepareStateDir(cfg.probe.StateDir); err != nil {
		rc.StateDir = "" // remediation then says it cannot act, and why
		log.Warn("remediation cannot remember its decisions (--"+flagname.ProbeStateDir+"): it will not act", zap.Error(err))
	}
	return remedy.New(rc, cfg.host, prober, probe.NewHelperFS(probe.HelperConfig{}), log)
}

// onceRemedy runs --once's remediation over rep, its audit entries going to
// the journal when there is one (an SRE's terminal shows them on stderr as
// well).
func onceRemedy(ctx context.Context, cfg config, prober *probe.Prober, log *zap.Logger, rep *finding.Report) {
	if cfg.remediation.mode == string(remedy.Off) || !rep.Snapshot.Live {
		return
	}
	audit := log
	if journal.Enabled() {
		jc := logging.NewJournalCore(zapcore.InfoLevel, nil, log.Core(), "mountwatchd", export.PriorityField)
		defer jc.Close()
		audit = zap.New(zapcore.NewTee(log.Core(), jc))
	}
	newRemedy(cfg, prober, audit, true).Run(ctx, rep)
}
