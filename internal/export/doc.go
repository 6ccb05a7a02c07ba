// Package export renders probe Reports for people and programs: the text
// report and summary line of --once, and the versioned JSON document.
//
// Exporters only consume check.Report and check.Finding; they never run a
// check or touch a mount.
package export
