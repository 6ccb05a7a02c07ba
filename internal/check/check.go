package check

import (
	"context"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// Check finds one kind of problem. Its inputs are the Env, its outputs the
// Outcome: nothing else passes between a check and the Runner.
type Check interface {
	// Decl is the check's declaration: the same value its file
	// registers (see Register).
	Decl() Decl
	// Run looks for problems in env. It must return within ctx's deadline
	// and never write to a watched filesystem.
	Run(ctx context.Context, env *Env) Outcome
}

// Env is what one run of a check sees. The Runner fills in what the check's
// Decl.Needs asks for and nothing else.
type Env struct {
	// Snapshot is the mount table the check runs over.
	Snapshot *mounts.Snapshot
	// Root is the inspected namespace's root, open, for checks that need
	// or use it (NeedsRoot, UsesRoot) on a live snapshot; nil otherwise,
	// and for UsesRoot when it cannot be opened. The Runner closes it
	// after the run.
	Root *mounts.Root
	// Probes is this run's probe round for a NeedsProbes check: the
	// Runner probes once per run, for every check that needs it. For a
	// UsesProbes check it is that round when the run makes one, else the
	// prober's latest (possibly of an older table), or nil.
	Probes *probe.Round
}

// Outcome is what one run of a check found and how it went.
type Outcome struct {
	// Findings are the problems found. They are reported even when Err is
	// set (a check that could not look everywhere still says what it saw).
	Findings []finding.Finding
	// Err means the check could not finish. A SkipError (or several,
	// joined) means it could not see what it needs for a reason of how it
	// runs (no CAP_SYS_ADMIN): with nothing found the check is reported as
	// skipped, not failed.
	Err error
	// Notes say what the run left out on purpose, not as an error (an
	// overlay whose layers the inspected root cannot reach); they become
	// Result.Reason.
	Notes []string
	// Scan is the check's tree-scan progress since the check value was
	// made; nil for a check that does not scan. The Runner sums it into
	// Report.Scan.
	Scan *walk.Stats
	// Table is the mount table's size and growth, from the check that
	// measures them (mount_leak); the Runner puts it in Report.Table.
	Table *finding.TableStats
	// Tasks is the scan of the node's tasks stuck on FUSE and network
	// filesystems that the check used (the probing checks, one scan per
	// probe round); the Runner puts it in Report.Tasks.
	Tasks *tasks.Report
}

// Needs says what a check needs from its Env: the Runner provides it, or
// reports why it could not without running the check.
type Needs uint

// What a check can need.
const (
	// NeedsLive: the check looks at the live system; on a captured table
	// it is skipped.
	NeedsLive Needs = 1 << iota
	// NeedsRoot: Env.Root. When the inspected root cannot be opened (no
	// CAP_SYS_PTRACE for another process's root, the process exited) the
	// check is not run and that is its error: an errno of ours must never
	// read as a broken mount.
	NeedsRoot
	// UsesRoot: Env.Root when the snapshot is live and the root opens;
	// the check runs without it otherwise.
	UsesRoot
	// NeedsProbes: Env.Probes is this run's probe round.
	NeedsProbes
	// UsesProbes: Env.Probes is the latest probe results there are,
	// without probing for this check: this run's round when the run makes
	// one, else the prober's latest; never set on a captured table.
	UsesProbes
)
