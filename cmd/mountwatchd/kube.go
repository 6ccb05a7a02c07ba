package main

import (
	"io"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/flagname"
	"github.com/mountwatchd/mountwatchd/internal/kubelink"
)

// kubeConfig are the flags of the Kubernetes API reporting: all off unless
// given, and without any of --kube.events, --kube.condition and
// --kube.taint mountwatchd never starts mountwatchd-kube and never talks
// to the API server.
type kubeConfig struct {
	kubelink.Config
	helper string
}

func addKubeFlags(app *kingpin.Application, kc *kubeConfig) {
	kubelink.AddFlags(app, &kc.Config)
	app.Flag(flagname.KubeHelper, "Path of "+kubelink.HelperName+", the process that talks to the API server (default: beside this binary, else in ../lib/mountwatchd or ../libexec/mountwatchd from it, else in $PATH).").
		PlaceHolder("FILE").StringVar(&kc.helper)
}

// startKube starts mountwatchd-kube when a switch is on: publish then also
// hands it each state, and stop ends it. Without a switch on it returns
// publish unchanged and registers nothing.
func startKube(cfg config, stderr io.Writer, log *zap.Logger, reg prometheus.Registerer, publish func(*export.State)) (func(*export.State), func(), error) {
	kc := cfg.kube
	if !kc.Enabled() {
		return publish, func() {}, nil
	}
	link, err := kubelink.Start(kc.Config, kubelink.LinkConfig{Helper: kc.helper, Stderr: stderr, Log: log,
		LogArgs: []string{"--" + flagname.LogLevel + "=" + cfg.logLevel, "--" + flagname.LogFormat + "=" + cfg.logFormat,
			"--" + flagname.LogTarget + "=" + cfg.daemon.logTarget}}, reg)
	if err != nil {
		return nil, nil, err
	}
	return func(st *export.State) {
		publish(st)
		if st.Report != nil {
			link.Publish(kubelink.NewSnapshot(st.Report.Findings, !st.LastComplete.IsZero()))
		}
	}, link.Stop, nil
}
