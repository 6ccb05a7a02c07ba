// Package flagname names mountwatchd's command-line flags, once: for
// cmd/mountwatchd, which defines the flags (next to them, with the defaults
// the owning packages export), and for the messages of the packages whose
// settings they are ("the cap (--probe.max-blocked)"). It holds names only.
package flagname

// The flags, without their leading "--".
const (
	Once        = "once"
	Output      = "output"
	Mountinfo   = "mountinfo"
	InstallTo   = "install-to"
	OnceTimeout = "once.timeout"

	Procfs        = "path.procfs"
	MaxTableBytes = "mountinfo.max-bytes"
	TargetPID     = "target.pid"
	Kubelet       = "path.kubelet"
	PodLogs       = "path.pod-logs"

	ProbeTimeout      = "probe.timeout"
	ProbeMaxBlocked   = "probe.max-blocked"
	ProbeFSTypes      = "probe.fstypes"
	ProbeStuckAfter   = "probe.stuck-after"
	Fusectl           = "path.fusectl"
	ProbeMountFusectl = "probe.mount-fusectl"

	ProbeShallowFSTypes = "probe.shallow-fstypes"
	ProbeStateDir       = "probe.state-dir"

	RemediationMode       = "remediation.mode"
	RemediationFSTypes    = "remediation.fstypes"
	RemediationHungFor    = "remediation.hung-for"
	RemediationInterval   = "remediation.interval"
	RemediationMaxPerHour = "remediation.max-per-hour"

	ScanBudget          = "scan.budget"
	ScanOnceBudget      = "scan.once-budget"
	ScanRate            = "scan.rate"
	ScanRoot            = "scan.root"
	ContainerdRoot      = "path.containerd-root"
	ContainerdSnapshots = "path.containerd-snapshots"

	LogLevel  = "log.level"
	LogFormat = "log.format"
	LogTarget = "log.target"

	TelemetryPath    = "web.telemetry-path"
	MaxProblemSeries = "metrics.max-problem-series"
	Interval         = "interval"
	ProbeInterval    = "probe.interval"
	ScanInterval     = "scan.interval"
)
