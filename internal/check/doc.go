// Package check finds broken mounts. A check is a value with two methods:
// Decl, its declaration, and Run(ctx, *Env) Outcome, a function of its
// inputs (the snapshot, the inspected root, the run's probe round) to its
// outputs (findings, error, notes, scan progress, the table's size, the
// stuck-task scan it used). The Runner runs the checks one after another,
// or, with Runner.Concurrent (what --once sets), all at once, each in its
// own goroutine, with the run's root and probe round still made once; either
// way it gives each the Env its declaration asks for, never lets one failing
// or panicking check stop the others, and turns the Outcomes into a Report
// in catalogue order. The daemon's lanes run sequentially. The Tracker, and
// only the Tracker, stamps when each problem was first seen and what
// appeared, changed or cleared.
//
// What a run produces (Finding, Result, Report, Change, their IDs and
// severities) is package finding's: the exporters (package export) import
// that and never this package. Nothing here writes to a watched filesystem.
//
// It is not where the mount table is read (package tableread) or parsed
// (package mounts), where
// mounts are probed (package probe) or trees walked (package walk), nor where
// schedules, metrics or the journal live (packages daemon and export).
//
// # Adding a check
//
// A new check touches its own file, its test, its alert rule, its runbook
// page and two table rows; nothing else needs editing. Its file,
// internal/check/<name>.go, holds the ID, the declaration and its
// registration, the check type and its Run (copy the shape of deleted.go
// for a table check, stale.go for a probe check, stray.go for a scan
// check):
//
//	// MyCheck is the ID of MyCheckCheck.
//	const MyCheck finding.ID = "my_check" // stable: JSON, metric labels, journal
//
//	var myCheckDecl = Decl{
//		ID: MyCheck, Kind: finding.TableCheck, Needs: UsesRoot, Order: 90,
//		MessageID:  "0123456789abcdef0123456789abcdef", // uuidgen | tr -d -
//		Severities: []finding.Severity{finding.Warning},
//		New:        func(cfg *Config) Check { return MyCheckCheck{} },
//	}
//
//	func init() { Register(myCheckDecl) }
//
//	// Decl implements Check.
//	func (MyCheckCheck) Decl() Decl { return myCheckDecl }
//
//	// Run implements Check.
//	func (MyCheckCheck) Run(ctx context.Context, env *Env) Outcome { ... }
//
// Kind is the schedule (table: every read of the mount table; probe; scan).
// Needs says what the Env must carry: NeedsLive (skipped on a captured
// table), NeedsRoot or UsesRoot (Env.Root, the one way to reach a path of
// the inspected namespace), NeedsProbes or UsesProbes (Env.Probes). A
// dependency on another check is a need, never the order of the catalogue.
// Settings come from Config: add a field there, and its flag, validation
// and Apply beside the others in flags.go (cmd/mountwatchd only assembles
// them; the probe and fusectl settings are still its own). Order places the
// check in reports (the checks today use 10 to 80). Registration is all that
// the catalogue, --once, the daemon's schedule, the journal's MESSAGE_ID and
// the per-check metric series need.
//
// Then:
//
//  1. Its test, internal/check/<name>_test.go: the failure on a real mount
//     (internal/testenv) and on captured tables (internal/mounts/testdata),
//     and a healthy node that stays clean; runOne(c, snapshot) runs one
//     check as the Runner does.
//  2. Its alert rule: one alert per declared severity in
//     packaging/prometheus/mountwatchd.rules.yml, with a promtool test in
//     packaging/prometheus/mountwatchd.rules.test.yml that fires it; make
//     manifests copies the rules into the chart
//     (packaging/helm/mountwatchd/files) and renders
//     packaging/prometheus/prometheusrule.yaml from it.
//  3. Its runbook page, docs/checks/<id>.md, with the sections every page
//     has (Meaning, Kubernetes symptoms, Impact, Diagnosis, Mitigation,
//     What not to do, Examples), and a runbook_url to it on each of its
//     alerts.
//  4. Its rows: README.md's table of checks (id, severity, kind, what it
//     finds, a link to its page) and docs/journal.md's MESSAGE_ID table.
//
// TestEveryCheckInREADME, TestEveryCheckAlerted and
// TestDashboardCoversEveryCheck here, and packaging's TestRunbooks, fail
// until 2 to 4 are done.
package check
