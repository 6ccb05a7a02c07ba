// Package export renders check Reports for people and programs: the text
// report and summary line of --once, the versioned JSON document, the
// Prometheus collector over the daemon's published State, and the journal
// entry of each problem that appears, changes or clears.
//
// Exporters only consume check.Report, check.Finding and State; they never
// run a check or touch a mount.
package export
