package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/flagname"
	"github.com/mountwatchd/mountwatchd/internal/kubeapi"
)

// kubeConfig are the flags of the Kubernetes API reporting: all off unless
// given, and without any of --kube.events, --kube.condition and
// --kube.taint mountwatchd never talks to the API server.
type kubeConfig struct {
	kubeapi.Config
	kubeconfig string
}

func addKubeFlags(app *kingpin.Application, kc *kubeConfig) {
	app.Flag(flagname.KubeEvents, "Record a Warning event on each pod a warning or critical problem breaks when it appears, and a Normal one when it clears "+
		"(also on the pod's claim when the volume is a PersistentVolume).").BoolVar(&kc.Events)
	app.Flag(flagname.KubeCondition, "Keep a node condition (--"+flagname.KubeConditionType+"): True while a warning or critical problem exists.").BoolVar(&kc.Condition)
	app.Flag(flagname.KubeConditionType, "The node condition's type; change it when node-problem-detector's mountwatchd plugin sets the default one.").
		Default(kubeapi.DefaultConditionType).StringVar(&kc.ConditionType)
	app.Flag(flagname.KubeTaint, "Taint the node "+kubeapi.TaintKey+":NoSchedule while a critical problem lasts (no other taint is touched).").BoolVar(&kc.Taint)
	app.Flag(flagname.KubeClearOnStop, "On a clean stop, set the condition False and remove the taint if this process set it.").BoolVar(&kc.ClearOnStop)
	app.Flag(flagname.KubeKubeconfig, "Credentials for the API server (default: the pod's ServiceAccount, in-cluster).").PlaceHolder("FILE").StringVar(&kc.kubeconfig)
	app.Flag(flagname.KubeNodeName, "This node's name in the API (the chart sets NODE_NAME).").Envar("NODE_NAME").StringVar(&kc.NodeName)
	app.Flag(flagname.KubeTimeout, "Deadline of each request to the API server.").Default(kubeapi.DefaultTimeout.String()).DurationVar(&kc.Timeout)
	app.Flag(flagname.KubeHeartbeat, "How often the node condition is written when it does not change.").Default(kubeapi.DefaultHeartbeat.String()).DurationVar(&kc.Heartbeat)
	intFlag(app, flagname.KubeEventQueue, "Most events waiting for the API server; past it the oldest is dropped (mountwatchd_kube_events_total{outcome=\"dropped_queue_full\"}).",
		strconv.Itoa(kubeapi.DefaultQueueSize), &kc.QueueSize)
}

// startKube starts the reporter when a switch is on: publish then also
// hands it each state, and stop ends it. Without a switch on it returns
// publish unchanged and registers nothing.
func startKube(kc kubeConfig, log *zap.Logger, reg prometheus.Registerer, publish func(*export.State)) (func(*export.State), func(), error) {
	if !kc.Enabled() {
		return publish, func() {}, nil
	}
	switch {
	case kc.NodeName == "":
		return nil, nil, errors.New("--" + flagname.KubeNodeName + " (or $NODE_NAME) is needed to tell the API server about this node")
	case kc.Timeout <= 0 || kc.Heartbeat <= 0 || kc.QueueSize <= 0:
		return nil, nil, fmt.Errorf("--%s, --%s and --%s must be positive", flagname.KubeTimeout, flagname.KubeHeartbeat, flagname.KubeEventQueue)
	}
	core, err := kubeapi.NewClient(kc.kubeconfig, "mountwatchd/"+versionString(), kc.Timeout)
	if err != nil {
		return nil, nil, err
	}
	kubeapi.LogTo(log)
	kc.Log = log
	r := kubeapi.New(kc.Config, core)
	reg.MustRegister(r.Collectors()...)
	r.Start()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*kc.Timeout)
		defer cancel()
		r.Stop(ctx)
	}
	return func(st *export.State) { publish(st); r.Publish(st) }, stop, nil
}
