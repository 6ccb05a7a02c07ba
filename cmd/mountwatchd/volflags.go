package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/flagname"
)

// volumeConfig are the flags of unmounted_volume and mount_leak.
type volumeConfig struct {
	grace           time.Duration
	cgroupRoot      string
	containerdState string
	maxStacked      int
	growth          int
	tableFraction   float64
}

func addVolumeFlags(app *kingpin.Application, vc *volumeConfig) {
	app.Flag(flagname.UnmountedGrace, "How long a running pod's volume directory may be seen without its mount before unmounted_volume reports it "+
		"(longer than kubelet's own set-up and tear-down; --"+flagname.Once+": how old the plain directory must be).").
		Default(check.DefaultUnmountedGrace.String()).DurationVar(&vc.grace)
	app.Flag(flagname.Cgroup, "The node's cgroup filesystem root, as the inspected namespace sees it: whether a pod runs comes from its kubelet cgroup.").
		Default(check.DefaultCgroupRoot).StringVar(&vc.cgroupRoot)
	app.Flag(flagname.ContainerdState, "containerd's state directory, as the inspected namespace sees it: whether a pod runs, where no kubelet cgroup can be seen.").
		Default(check.DefaultContainerdState).StringVar(&vc.containerdState)
	intFlag(app, flagname.LeakMaxStacked, "mount_leak: more mounts than this stacked on one mount point is a leak.",
		strconv.Itoa(check.DefaultMaxStacked), &vc.maxStacked)
	intFlag(app, flagname.LeakGrowth, "mount_leak: a group of mounts (one FUSE or network source and root, or one filesystem and root) grown by this many "+
		"over consecutive table reads without coming down is a leak (daemon).", strconv.Itoa(check.DefaultLeakGrowth), &vc.growth)
	app.Flag(flagname.LeakTableFraction, "mount_leak: the mount table at this share of fs.mount-max is a warning (critical at 0.95).").
		Default(strconv.FormatFloat(check.DefaultTableFraction, 'f', -1, 64)).Float64Var(&vc.tableFraction)
}

func (vc volumeConfig) validate() error {
	switch {
	case vc.grace <= 0:
		return fmt.Errorf("--%s=%s: want a positive duration", flagname.UnmountedGrace, vc.grace)
	case vc.maxStacked <= 0 || vc.growth <= 0:
		return fmt.Errorf("--%s and --%s must be positive", flagname.LeakMaxStacked, flagname.LeakGrowth)
	case vc.tableFraction <= 0 || vc.tableFraction > 1:
		return fmt.Errorf("--%s=%g: want a share above 0 and at most 1", flagname.LeakTableFraction, vc.tableFraction)
	}
	return nil
}

// apply sets the checks' configuration from the flags.
func (vc volumeConfig) apply(cc *check.Config) {
	cc.UnmountedGrace = vc.grace
	cc.CgroupRoot, cc.ContainerdState = vc.cgroupRoot, vc.containerdState
	cc.Leak = check.LeakConfig{MaxStacked: vc.maxStacked, Growth: vc.growth, TableFraction: vc.tableFraction}
}
