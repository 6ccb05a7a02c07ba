package flagname

// The flags of the Kubernetes API reporting (internal/kubeapi).
const (
	KubeEvents        = "kube.events"
	KubeCondition     = "kube.condition"
	KubeConditionType = "kube.condition-type"
	KubeTaint         = "kube.taint"
	KubeClearOnStop   = "kube.clear-on-stop"
	KubeKubeconfig    = "kube.kubeconfig"
	KubeNodeName      = "kube.node-name"
	KubeTimeout       = "kube.timeout"
	KubeHeartbeat     = "kube.heartbeat"
	KubeEventQueue    = "kube.event-queue"
)

// KubeHelper is the daemon's: the path of mountwatchd-kube.
const KubeHelper = "kube.helper"
