// Package export renders Reports (package finding) for people and programs: the text
// report and summary line of --once, the versioned JSON document, the
// Prometheus collector over the daemon's published State, and the journal
// entry of each problem that appears, changes or clears.
//
// Exporters only consume finding.Report, finding.Finding and State; they
// never run a check or touch a mount, and do not import package check.
package export
