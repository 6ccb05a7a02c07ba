// Package probeflag defines the --probe.* and fusectl flags beside their
// settings, validates them once and turns them into a probe.Config, as
// internal/check/flags.go does for the checks' flags: cmd/mountwatchd only
// assembles them.
//
// It is a package of its own so that package probe, which the exporters
// import, stays free of kingpin; nothing but a command should import it.
package probeflag

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/cliflag"
	"github.com/mountwatchd/mountwatchd/internal/flagname"
	"github.com/mountwatchd/mountwatchd/internal/probe"
)

// Flags are the probe settings from the command line.
type Flags struct {
	// Config is the prober's configuration: Timeout and MaxBlocked from
	// their flags, FSTypes and ShallowFSTypes filled in by Validate.
	probe.Config
	// TimeoutSet: --probe.timeout was given (--once then keeps it).
	TimeoutSet bool
	// FSTypeList and ShallowFSTypeList are the comma-separated lists of
	// --probe.fstypes and --probe.shallow-fstypes, which Validate turns
	// into Config's FSTypes and ShallowFSTypes.
	FSTypeList, ShallowFSTypeList string
	ShallowSet                    bool
	// StateDir records probes stuck in the kernel (filled in by Validate
	// when empty).
	StateDir string
	// StuckAfter is hung_mount's --probe.stuck-after (0: never).
	StuckAfter time.Duration
	// Fusectl is where fusectl is; MountFusectl, whether to mount it there.
	Fusectl      string
	MountFusectl bool
}

// AddTimeoutFlag defines --probe.timeout on app, into f; AddFlags defines
// the others (the help lists --once.timeout between them).
func AddTimeoutFlag(app *kingpin.Application, f *Flags) {
	app.Flag(flagname.ProbeTimeout, "How long a probe of a FUSE or network mount may take before the mount is reported hung (--"+flagname.Once+": at most half of --"+flagname.OnceTimeout+" unless given).").
		Default(probe.DefaultTimeout.String()).IsSetByUser(&f.TimeoutSet).DurationVar(&f.Timeout)
}

// AddFlags defines the probe flags but --probe.timeout on app, into f.
func AddFlags(app *kingpin.Application, f *Flags) {
	cliflag.Int(app, flagname.ProbeMaxBlocked, "Most probes left blocked in the kernel at once (each pins a thread); past it, connections are reported as not probed.",
		strconv.Itoa(probe.DefaultMaxBlocked), &f.MaxBlocked)
	app.Flag(flagname.ProbeFSTypes, "Comma-separated filesystem types to probe; fuse.* matches every FUSE subtype. "+
		"Default: FUSE and every filesystem whose server can stop answering ("+strings.Join(probe.DefaultProbeFSTypes, ", ")+").").
		PlaceHolder("TYPES").StringVar(&f.FSTypeList)
	app.Flag(flagname.ProbeShallowFSTypes, "Comma-separated probed filesystem types whose probe is statfs and stat of the root only, "+
		"without reading the root directory's first entries (one getdents64, which reaches the server where statfs and stat may be answered from the client's caches): "+
		"object stores, whose listing is costly. Empty: read every probed type's root. "+
		"Default: "+strings.Join(probe.DefaultShallowFSTypes, ", ")+".").
		PlaceHolder("TYPES").IsSetByUser(&f.ShallowSet).StringVar(&f.ShallowFSTypeList)
	app.Flag(flagname.ProbeStateDir, "Where probes still stuck in the kernel are recorded, so that a later --"+flagname.Once+" or a restarted daemon reports their connections hung without probing them again "+
		"(default $RUNTIME_DIRECTORY, /run/mountwatchd as root, else a per-user directory).").
		PlaceHolder("DIR").StringVar(&f.StateDir)
	app.Flag(flagname.ProbeStuckAfter, "Report a connection hung, even when its probe is answered, once one of the node's tasks has waited on it "+
		"this long (0: never). Long enough for a healthy but slow server: s3fs and gcsfuse answer close() or fsync() only once the "+
		"whole object is uploaded (5GiB at 10MB/s is 8.5 minutes). Measured from when mountwatchd first saw the task waiting, "+
		"so --"+flagname.Once+", which sees each task once, never reaches it.").
		Default(check.DefaultStuckAfter.String()).DurationVar(&f.StuckAfter)
	app.Flag(flagname.Fusectl, "Where the FUSE control filesystem is (waiting requests of hung connections).").
		Default(probe.DefaultFusectl).StringVar(&f.Fusectl)
	app.Flag(flagname.ProbeMountFusectl, "Mount fusectl at --"+flagname.Fusectl+" in our own mount namespace if it is not mounted (changes the system: off unless given).").
		BoolVar(&f.MountFusectl)
}

// Validate says what is wrong with the probe flags, naming them, and fills
// in the probed types and the state directory.
func (f *Flags) Validate() error {
	if f.Timeout <= 0 || f.MaxBlocked <= 0 {
		return errors.New("--" + flagname.ProbeTimeout + " and --" + flagname.ProbeMaxBlocked + " must be positive")
	}
	if f.StuckAfter < 0 {
		return fmt.Errorf("--"+flagname.ProbeStuckAfter+"=%s: want a duration, or 0 for never", f.StuckAfter)
	}
	if f.FSTypeList == "" {
		f.FSTypeList = strings.Join(probe.DefaultProbeFSTypes, ",")
	}
	f.FSTypes = splitList(f.FSTypeList, nil)
	if !f.ShallowSet {
		f.ShallowFSTypeList = strings.Join(probe.DefaultShallowFSTypes, ",")
	}
	f.ShallowFSTypes = splitList(f.ShallowFSTypeList, []string{})
	if f.StateDir == "" {
		f.StateDir = probe.DefaultStateDir()
	}
	return nil
}

// splitList appends the non-empty, trimmed items of the comma-separated s
// to out.
func splitList(s string, out []string) []string {
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// ForOnce fits the probe timeout to --once's budget: at most half of it
// unless --probe.timeout was given, which must then be shorter than it.
func (f *Flags) ForOnce(onceTimeout time.Duration) error {
	if !f.TimeoutSet {
		f.Timeout = min(f.Timeout, onceTimeout/2)
	} else if f.Timeout >= onceTimeout {
		return fmt.Errorf("--"+flagname.ProbeTimeout+"=%s must be shorter than --"+flagname.OnceTimeout+"=%s", f.Timeout, onceTimeout)
	}
	return nil
}

// StuckAfterConfig is --probe.stuck-after as check.Config takes it: the
// flag's 0 is never, Config's 0 the default.
func (f *Flags) StuckAfterConfig() time.Duration {
	if f.StuckAfter == 0 {
		return -1
	}
	return f.StuckAfter
}
