package check

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/mountwatchd/mountwatchd/internal/cliflag"
	"github.com/mountwatchd/mountwatchd/internal/flagname"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// The checks' own command line flags live here, beside their defaults, as
// node_exporter keeps a collector's flags beside it: each group has its
// settings, the function that defines its flags, one Validate naming the
// flag, and an Apply that sets a catalogue's Config from it.
// cmd/mountwatchd only assembles them.

// ScanFlags are the settings of the scanning checks (opaque_propagation,
// stray_overlay_xattr).
type ScanFlags struct {
	Budget, OnceBudget int
	Rate               float64
	RateSet            bool // --scan.rate given: --once keeps it
	Roots              []string
}

// AddScanFlags defines the --scan.* flags on app, into f.
func AddScanFlags(app *kingpin.Application, f *ScanFlags) {
	cliflag.Int(app, flagname.ScanBudget, "Most directory entries one scan run examines; the next run resumes where it stopped (daemon).",
		strconv.Itoa(walk.DefaultScanBudget), &f.Budget)
	cliflag.Int(app, flagname.ScanOnceBudget, "Most directory entries the full scan pass of --"+flagname.Once+" examines; a pass cut short is an error.",
		strconv.Itoa(walk.DefaultOnceBudget), &f.OnceBudget)
	app.Flag(flagname.ScanRate, "Most directory entries scanned per second by the daemon (and by --"+flagname.Once+" when given); 0 for no limit.").
		Default(strconv.Itoa(walk.DefaultScanRate)).IsSetByUser(&f.RateSet).Float64Var(&f.Rate)
	app.Flag(flagname.ScanRoot, "Another directory to scan for stray overlay xattrs, besides <kubelet>/pods/*/volumes (repeatable; a real path, as the inspected namespace sees it).").
		PlaceHolder("DIR").StringsVar(&f.Roots)
}

// Validate says what is wrong with the scan flags, naming them.
func (f ScanFlags) Validate() error {
	if f.Budget < 0 || f.OnceBudget < 0 || f.Rate < 0 {
		return errors.New("--" + flagname.ScanBudget + ", --" + flagname.ScanOnceBudget + " and --" + flagname.ScanRate + " must not be negative")
	}
	return nil
}

// Apply sets c's scan settings; set c.Once first. --once's pass completes
// in one run: it gets --scan.once-budget, is not rate limited unless
// --scan.rate is given (the rate protects a node from a daemon scanning
// all day, not from one pass), and its roots are walked on every core the
// process may use (GOMAXPROCS follows the CPU affinity and cgroup limit).
// The daemon's runs stay one root at a time and resumable.
func (f ScanFlags) Apply(c *Config) {
	c.ScanLimits = walk.ScanLimits{Budget: f.Budget, Rate: f.Rate}
	c.ScanRoots = f.Roots
	if c.Once {
		c.ScanLimits.Budget = f.OnceBudget
		c.ScanLimits.Workers = runtime.GOMAXPROCS(0)
		if !f.RateSet {
			c.ScanLimits.Rate = 0
		}
	}
}

// VolumeFlags are the settings of unmounted_volume and mount_leak.
type VolumeFlags struct {
	Grace                       time.Duration
	CgroupRoot, ContainerdState string
	Leak                        LeakConfig
}

// AddVolumeFlags defines unmounted_volume's and mount_leak's flags on app,
// into f.
func AddVolumeFlags(app *kingpin.Application, f *VolumeFlags) {
	app.Flag(flagname.UnmountedGrace, "How long a running pod's volume directory may be seen without its mount before unmounted_volume reports it "+
		"(longer than kubelet's own set-up and tear-down; --"+flagname.Once+": how old the plain directory must be).").
		Default(DefaultUnmountedGrace.String()).DurationVar(&f.Grace)
	app.Flag(flagname.Cgroup, "The node's cgroup filesystem root, as the inspected namespace sees it: whether a pod runs comes from its kubelet cgroup.").
		Default(DefaultCgroupRoot).StringVar(&f.CgroupRoot)
	app.Flag(flagname.ContainerdState, "containerd's state directory, as the inspected namespace sees it: whether a pod runs, where no kubelet cgroup can be seen.").
		Default(DefaultContainerdState).StringVar(&f.ContainerdState)
	cliflag.Int(app, flagname.LeakMaxStacked, "mount_leak: more mounts than this stacked on one mount point is a leak.",
		strconv.Itoa(DefaultMaxStacked), &f.Leak.MaxStacked)
	cliflag.Int(app, flagname.LeakGrowth, "mount_leak: a group of mounts (one FUSE or network source and root, or one filesystem and root) grown by this many "+
		"over consecutive table reads without coming down is a leak (daemon).", strconv.Itoa(DefaultLeakGrowth), &f.Leak.Growth)
	app.Flag(flagname.LeakTableFraction, "mount_leak: the mount table at this share of fs.mount-max is a warning (critical at 0.95).").
		Default(strconv.FormatFloat(DefaultTableFraction, 'f', -1, 64)).Float64Var(&f.Leak.TableFraction)
}

// Validate says what is wrong with the volume flags, naming them.
func (f VolumeFlags) Validate() error {
	switch {
	case f.Grace <= 0:
		return fmt.Errorf("--%s=%s: want a positive duration", flagname.UnmountedGrace, f.Grace)
	case f.Leak.MaxStacked <= 0 || f.Leak.Growth <= 0:
		return fmt.Errorf("--%s and --%s must be positive", flagname.LeakMaxStacked, flagname.LeakGrowth)
	case f.Leak.TableFraction <= 0 || f.Leak.TableFraction > 1:
		return fmt.Errorf("--%s=%g: want a share above 0 and at most 1", flagname.LeakTableFraction, f.Leak.TableFraction)
	}
	return nil
}

// Apply sets c's settings of unmounted_volume and mount_leak.
func (f VolumeFlags) Apply(c *Config) {
	c.UnmountedGrace = f.Grace
	c.CgroupRoot, c.ContainerdState = f.CgroupRoot, f.ContainerdState
	c.Leak = f.Leak
}
