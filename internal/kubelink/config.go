package kubelink

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/mountwatchd/mountwatchd/internal/cliflag"
	"github.com/mountwatchd/mountwatchd/internal/flagname"
)

// Defaults of Config, and the taint's key.
const (
	DefaultConditionType = "MountProblem"
	DefaultTimeout       = 10 * time.Second
	DefaultHeartbeat     = time.Minute
	DefaultQueueSize     = 1000
	TaintKey             = "mountwatchd.io/mount-problem"
)

// Config says what is told to the API server. Every switch is off by
// default, and with none on the daemon never starts the helper (Enabled).
type Config struct {
	// Events: a Warning event on each pod (and its claim) a warning or
	// critical problem names when it appears, a Normal one when it clears.
	Events bool
	// Condition: a node condition of type ConditionType.
	Condition     bool
	ConditionType string
	// Taint: the NoSchedule taint TaintKey while a critical problem lasts.
	Taint bool
	// ClearOnStop sets the condition False and removes the taint (if this
	// process set it) on a clean stop.
	ClearOnStop bool
	// Kubeconfig holds the credentials; empty: the pod's ServiceAccount.
	Kubeconfig string
	// NodeName is the node this daemon runs on.
	NodeName string
	// Timeout is each request's deadline.
	Timeout time.Duration
	// Heartbeat is how often the condition is written when it does not
	// change.
	Heartbeat time.Duration
	// QueueSize is the most events waiting for the API server.
	QueueSize int
}

// Enabled reports whether anything is to be told to the API server.
func (c Config) Enabled() bool { return c.Events || c.Condition || c.Taint }

// Validate says what is wrong with an enabled configuration, naming the
// flag; a disabled one is always valid (its other flags are unused).
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	switch {
	case c.NodeName == "":
		return errors.New("--" + flagname.KubeNodeName + " (or $NODE_NAME) is needed to tell the API server about this node")
	case c.Condition && c.ConditionType == "":
		return errors.New("--" + flagname.KubeConditionType + " is empty")
	case c.Timeout <= 0:
		return fmt.Errorf("--%s=%v: must be positive", flagname.KubeTimeout, c.Timeout)
	case c.Heartbeat <= 0:
		return fmt.Errorf("--%s=%v: must be positive", flagname.KubeHeartbeat, c.Heartbeat)
	case c.QueueSize <= 0:
		return fmt.Errorf("--%s=%d: must be positive", flagname.KubeEventQueue, c.QueueSize)
	}
	return nil
}

// AddFlags defines the --kube.* flags on app, into c: the daemon and
// mountwatchd-kube take the same ones.
func AddFlags(app *kingpin.Application, c *Config) {
	app.Flag(flagname.KubeEvents, "Record a Warning event on each pod a warning or critical problem breaks when it appears, and a Normal one when it clears "+
		"(also on the pod's claim when the volume is a PersistentVolume).").BoolVar(&c.Events)
	app.Flag(flagname.KubeCondition, "Keep a node condition (--"+flagname.KubeConditionType+"): True while a warning or critical problem exists.").BoolVar(&c.Condition)
	app.Flag(flagname.KubeConditionType, "The node condition's type; change it when node-problem-detector's mountwatchd plugin sets the default one.").
		Default(DefaultConditionType).StringVar(&c.ConditionType)
	app.Flag(flagname.KubeTaint, "Taint the node "+TaintKey+":NoSchedule while a critical problem lasts (no other taint is touched).").BoolVar(&c.Taint)
	app.Flag(flagname.KubeClearOnStop, "On a clean stop, set the condition False and remove the taint if this process set it.").BoolVar(&c.ClearOnStop)
	app.Flag(flagname.KubeKubeconfig, "Credentials for the API server (default: the pod's ServiceAccount, in-cluster).").PlaceHolder("FILE").StringVar(&c.Kubeconfig)
	app.Flag(flagname.KubeNodeName, "This node's name in the API (the chart sets NODE_NAME).").Envar("NODE_NAME").StringVar(&c.NodeName)
	app.Flag(flagname.KubeTimeout, "Deadline of each request to the API server.").Default(DefaultTimeout.String()).DurationVar(&c.Timeout)
	app.Flag(flagname.KubeHeartbeat, "How often the node condition is written when it does not change.").Default(DefaultHeartbeat.String()).DurationVar(&c.Heartbeat)
	cliflag.Int(app, flagname.KubeEventQueue, "Most events waiting for the API server; past it the oldest is dropped (mountwatchd_kube_events_total{outcome=\"dropped_queue_full\"}).",
		strconv.Itoa(DefaultQueueSize), &c.QueueSize)
}

// Args are the flags that give c to mountwatchd-kube.
func (c Config) Args() []string {
	args := []string{
		"--" + flagname.KubeConditionType + "=" + c.ConditionType,
		"--" + flagname.KubeNodeName + "=" + c.NodeName,
		"--" + flagname.KubeTimeout + "=" + c.Timeout.String(),
		"--" + flagname.KubeHeartbeat + "=" + c.Heartbeat.String(),
		"--" + flagname.KubeEventQueue + "=" + strconv.Itoa(c.QueueSize),
	}
	for _, b := range []struct {
		on   bool
		name string
	}{{c.Events, flagname.KubeEvents}, {c.Condition, flagname.KubeCondition}, {c.Taint, flagname.KubeTaint}, {c.ClearOnStop, flagname.KubeClearOnStop}} {
		if b.on {
			args = append(args, "--"+b.name)
		}
	}
	if c.Kubeconfig != "" {
		args = append(args, "--"+flagname.KubeKubeconfig+"="+c.Kubeconfig)
	}
	return args
}
