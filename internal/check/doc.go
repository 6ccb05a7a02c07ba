// Package check finds broken mounts: one Check per file, each a function of a
// mounts.Snapshot (and, for the live checks, of the prober's rounds or the
// walker's scans) that returns Findings. The Runner runs them so that one
// failing check never stops the others; the Tracker stamps when each problem
// was first seen and what appeared, changed or cleared.
//
// The exporters (package export) consume Findings and Reports and never reach
// back into the checks. Nothing here writes to a watched filesystem.
package check
