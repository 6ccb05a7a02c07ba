package flagname

// The flags of unmounted_volume and mount_leak.
const (
	UnmountedGrace    = "unmounted-volume.grace"
	Cgroup            = "path.cgroup"
	ContainerdState   = "path.containerd-state"
	LeakMaxStacked    = "mount-leak.max-stacked"
	LeakGrowth        = "mount-leak.growth"
	LeakTableFraction = "mount-leak.table-fraction"
)
