package remedy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/flagname"
)

// Mode is whether remediation acts.
type Mode string

// Modes of remediation.
const (
	Off    Mode = "off"     // nothing is decided (the default)
	DryRun Mode = "dry-run" // every decision is made and said, nothing is written
	On     Mode = "on"      // hung connections are aborted
)

// Modes lists the modes, for the flag.
var Modes = []string{string(Off), string(DryRun), string(On)}

// Defaults for Config (and so for the flags).
const (
	// DefaultHungFor is how long a connection must have been hung
	// continuously before it is aborted. Ten minutes: a probe asks for
	// statfs, stat and one directory read, which a server that is only
	// slow answers in seconds, and the waits of healthy servers are far
	// shorter: a Ceph MDS failover is bounded by mds_beacon_grace (15s)
	// plus replay and mds_reconnect_timeout (45s), sshfs gives up on a
	// dead link after ServerAliveInterval x ServerAliveCountMax, and the
	// kernel's own hung task warning fires at 120s. A server that has
	// answered none of those for ten minutes is stuck, not slow; it is
	// also --probe.stuck-after's default, so a connection found hung by
	// its users' tasks and one found hung by the probe wait the same.
	DefaultHungFor = 10 * time.Minute
	// DefaultInterval is the least time between two aborts on a node:
	// long enough for kubelet to unmount the dead volume and the CSI
	// driver to mount it again (kubelet retries every 2 minutes at first)
	// and for the operator to see what the first abort did.
	DefaultInterval = 10 * time.Minute
	// DefaultMaxPerHour caps aborts per node per hour. More connections
	// hanging at once than that is an outage of the backend they share
	// (the Ceph cluster, the network): aborting them all only turns them
	// dead, and the remounts hang on the same backend. Past the cap,
	// remediation is held back and says so.
	DefaultMaxPerHour = 3
)

// DefaultFSTypes are the types remediation may abort: every FUSE type
// (fuse, fuse.<subtype>, fuseblk). Kernel network filesystems have no
// abort and are never allowed.
var DefaultFSTypes = []string{"fuse", "fuse.*", "fuseblk"}

// Config says whether and how remediation acts.
type Config struct {
	Mode Mode
	// FSTypes are the filesystem types it may abort ("fuse.*" matches
	// every FUSE subtype); FUSE types only.
	FSTypes []string
	// HungFor is how long a connection must have been hung
	// continuously (its blocked probe's age) before it is aborted.
	// ApplyHungFor false (--once without --remediation.hung-for) does
	// not wait for it: --once sees one probe, not a duration.
	HungFor      time.Duration
	ApplyHungFor bool
	// Interval is the least time between two aborts (per mode) on the
	// node, MaxPerHour the most aborts in any hour.
	Interval   time.Duration
	MaxPerHour int
	// StateDir holds the record of every decision that acted (or, in
	// dry-run, would have), so a restarted daemon or a later --once never
	// repeats one; empty: remediation cannot act.
	StateDir string
	// Fusectl is where fusectl is mounted, as the inspected namespace
	// sees it.
	Fusectl string
	// Once is set for --once: one look, no memory of the decisions said.
	Once bool
}

// Validate checks the configuration's values and that every allowed type
// is a FUSE type.
func (c Config) Validate() error {
	switch c.Mode {
	case Off, DryRun, On:
	default:
		return fmt.Errorf("--%s=%q: want %s", flagname.RemediationMode, c.Mode, strings.Join(Modes, ", "))
	}
	if len(c.FSTypes) == 0 {
		return errors.New("--" + flagname.RemediationFSTypes + " is empty: nothing could be aborted")
	}
	for _, t := range c.FSTypes {
		if !IsFUSEType(t) {
			return fmt.Errorf("--%s: %q is not a FUSE type (fuse, fuse.<subtype>, fuseblk): only FUSE connections can be aborted", flagname.RemediationFSTypes, t)
		}
	}
	if c.HungFor < 0 || c.Interval < 0 || c.MaxPerHour < 1 {
		return fmt.Errorf("--%s and --%s must not be negative, --%s at least 1", flagname.RemediationHungFor, flagname.RemediationInterval, flagname.RemediationMaxPerHour)
	}
	return nil
}

// IsFUSEType reports whether t (a type or a pattern of the allow list) is
// a FUSE type.
func IsFUSEType(t string) bool {
	return t == "fuse" || t == "fuseblk" || (strings.HasPrefix(t, "fuse.") && len(t) > len("fuse."))
}
