package check

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// Decl declares a check: everything the rest of mountwatchd knows of it.
// Each check's file registers its Decl once, from init (Register); the
// catalogue (the checks --once and the daemon run), the journal's
// MESSAGE_IDs and the per-check metric series all follow from it, and a test
// fails while the README, the alert rules or the dashboard lack it.
type Decl struct {
	// ID is the check's stable, documented name; never rename one.
	ID finding.ID
	// Kind is the check's schedule in the daemon.
	Kind finding.Kind
	// Needs is what the check needs from its Env.
	Needs Needs
	// MessageID is the journal MESSAGE_ID of the check's problem entries:
	// 32 lower-case hex digits (a random UUID without dashes), fixed
	// forever so `journalctl MESSAGE_ID=<id>` finds every entry of it.
	MessageID string
	// Severities are the severities its findings can have, most severe
	// first.
	Severities []finding.Severity
	// Order places the check in the catalogue and so in reports:
	// ascending, ties broken by ID.
	Order int
	// New builds the check from the configuration of one catalogue. Each
	// call returns a new value: a scanning check keeps its cursor in it.
	New func(*Config) Check
}

// Config is what the catalogue's checks are built from: the settings of
// every check, set from the command line (the flags in flags.go, and
// cmd/mountwatchd's probe and fusectl flags). A zero field means the
// check's default. A check that needs a new setting adds a field here.
type Config struct {
	// Fusectl is where fusectl is mounted (probe.DefaultFusectl when
	// empty); FusectlErr, when set, says why hung_mount cannot read the
	// waiting requests of a connection.
	Fusectl    string
	FusectlErr error
	// ScanLimits bound each run of a scanning check.
	ScanLimits walk.ScanLimits
	// ScanRoots are more directories stray_overlay_xattr scans, as the
	// inspected namespace sees them.
	ScanRoots []string
	// Leak are mount_leak's thresholds (zero fields: the defaults).
	Leak LeakConfig
	// UnmountedGrace is how long unmounted_volume waits before a running
	// pod's unmounted volume is a finding (DefaultUnmountedGrace when 0).
	UnmountedGrace time.Duration
	// CgroupRoot and ContainerdState are where the inspected node keeps
	// its cgroups and containerd its task state, as it names them, for
	// whether a pod runs (DefaultCgroupRoot, DefaultContainerdState when
	// empty).
	CgroupRoot, ContainerdState string
	// Tasks scans the node's tasks stuck on FUSE and network filesystems
	// for hung_mount and stale_mount, which share it (one scan per probe
	// round); nil: tasks are not scanned.
	Tasks *tasks.Scanner
	// StuckAfter is how long a task may wait on a connection before
	// hung_mount reports it even when its probe is answered
	// (DefaultStuckAfter when 0; negative: never).
	StuckAfter time.Duration
	// Once is set for --once: one run, so a scanning check's pass must
	// complete in it (a run that stops at its budget first is an error)
	// and a check with memory across runs judges from one look.
	Once bool
}

var (
	registryMu sync.Mutex
	registry   = map[finding.ID]Decl{}
)

var messageIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// Register adds a check to the catalogue; each check's file calls it once,
// from init. It panics on a declaration that is incomplete or collides
// with another (the same ID or MESSAGE_ID): a program that registers a
// broken check must not start.
func Register(d Decl) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if err := validate(d); err != nil {
		panic("check.Register: " + err.Error())
	}
	registry[d.ID] = d
	finding.MessageIDs[d.ID] = d.MessageID
}

func validate(d Decl) error {
	switch {
	case d.ID == "":
		return fmt.Errorf("a check without an ID")
	case d.New == nil:
		return fmt.Errorf("%s: no New", d.ID)
	case !messageIDPattern.MatchString(d.MessageID):
		return fmt.Errorf("%s: MessageID %q is not 32 lower-case hex digits", d.ID, d.MessageID)
	case len(d.Severities) == 0:
		return fmt.Errorf("%s: no Severities", d.ID)
	}
	for _, s := range d.Severities {
		if s.Rank() == 0 {
			return fmt.Errorf("%s: unknown severity %q", d.ID, s)
		}
	}
	for _, o := range registry {
		switch {
		case o.ID == d.ID:
			return fmt.Errorf("%s registered twice", d.ID)
		case o.MessageID == d.MessageID:
			return fmt.Errorf("%s has the MessageID of %s", d.ID, o.ID)
		}
	}
	return nil
}

// Declared lists every registered check's declaration in catalogue order.
func Declared() []Decl {
	registryMu.Lock()
	defer registryMu.Unlock()
	out := make([]Decl, 0, len(registry))
	for _, d := range registry {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Decl) int { return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.ID, b.ID)) })
	return out
}

// Catalogue builds every registered check from cfg, in catalogue order:
// the checks --once and the daemon run.
func Catalogue(cfg *Config) []Check {
	if cfg == nil {
		cfg = &Config{}
	}
	var out []Check
	for _, d := range Declared() {
		out = append(out, d.New(cfg))
	}
	return out
}
