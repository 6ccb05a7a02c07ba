package export

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mountwatchd/mountwatchd/internal/finding"
)

// SummaryMax is the longest summary line: node-problem-detector shows at
// most 80 characters of a custom plugin's first line of output.
const SummaryMax = 80

// Summary is the one-line verdict of a report, at most SummaryMax bytes.
func Summary(r *finding.Report) string {
	s := r.Snapshot
	var line string
	switch r.Status() {
	case finding.StatusProblems:
		f := r.Findings[0] // most severe first
		line = fmt.Sprintf("%s (%s): %s %s", plural(len(r.Findings), "mount problem"),
			severityCounts(r.Findings), f.Check, Printable(f.MountPoint))
	case finding.StatusError:
		var what []string
		if n := s.ParseErrorTotal(); n > 0 {
			what = append(what, plural(n, "unparsable line"))
		}
		for _, c := range r.Checks {
			if c.Status == finding.StatusError {
				what = append(what, string(c.Check)+" failed")
			}
		}
		line = fmt.Sprintf("UNKNOWN: no problems in %s, but %s", plural(len(s.Mounts), "mount"), strings.Join(what, ", "))
	default:
		line = fmt.Sprintf("OK: %s checked, no problems", plural(len(s.Mounts), "mount"))
	}
	if r.Status() != finding.StatusProblems {
		line += skippedSummary(r)
	}
	return Truncate(line, SummaryMax)
}

// skippedSummary says how many checks of a live run were skipped and why
// ("; 2 checks skipped (no CAP_SYS_ADMIN)"); empty when none was. A captured
// table's live checks are skipped by definition and not counted.
func skippedSummary(r *finding.Report) string {
	n := 0
	var causes []string
	for _, c := range r.Checks {
		if c.Status != finding.StatusSkipped || c.Cause == "" {
			continue
		}
		n++
		if !slices.Contains(causes, c.Cause) {
			causes = append(causes, c.Cause)
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; %s skipped (%s)", plural(n, "check"), strings.Join(causes, ", "))
}

// ErrorSummary is the summary line when the node could not be checked.
func ErrorSummary(err error) string {
	return Truncate("UNKNOWN: could not check: "+Printable(err.Error()), SummaryMax)
}

func severityCounts(fs []finding.Finding) string {
	n := map[finding.Severity]int{}
	for _, f := range fs {
		n[f.Severity]++
	}
	var parts []string
	for _, sev := range finding.Severities {
		if n[sev] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[sev], sev))
		}
	}
	return strings.Join(parts, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// Truncate shortens s to at most n bytes, ending in "..." when cut, without
// splitting a UTF-8 sequence.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// Printable escapes control and invalid characters (a mount point can hold a
// newline or a terminal escape sequence) so text output stays one honest
// line per field. Printable text, including non-ASCII, is kept as is.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == utf8.RuneError || r == '\\' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, w := 0, 0; i < len(s); i += w {
		r, width := utf8.DecodeRuneInString(s[i:])
		w = width
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == utf8.RuneError && width == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
