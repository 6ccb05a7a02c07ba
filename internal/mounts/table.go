package mounts

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// maxLine is the longest mount table line handed to mountinfo, whose scanner
// stops at bufio.MaxScanTokenSize.
const maxLine = 64*1024 - 1

// ErrMalformed is wrapped by every ParseError.
var ErrMalformed = errors.New("malformed mountinfo line")

// ParseError is one line of a mount table that could not be parsed. The line
// is left out of the snapshot; every other line is still checked.
type ParseError struct {
	Line int    `json:"line"`
	Text string `json:"text"`
	Err  string `json:"error"`
}

func (e ParseError) Error() string {
	return fmt.Sprintf("mountinfo line %d: %s: %q", e.Line, e.Err, e.Text)
}

func (e ParseError) Unwrap() error { return ErrMalformed }

// ParseMountTable parses a mount table in /proc/<pid>/mountinfo format.
// A malformed line becomes a ParseError naming its line number and does not
// hide the other mounts. The error is non-nil only when r cannot be read.
func ParseMountTable(r io.Reader) ([]*Mount, []ParseError, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, err
	}
	data := string(raw) // one copy; every line below is a substring of it

	var (
		kept     []string // lines that validate, without "\r"
		lineNos  []int    // line number of each kept line
		perrors  []ParseError
		verbatim = true // data holds only kept lines, as they are
	)
	for n, rest := 1, data; len(rest) > 0; n++ {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		if l := strings.TrimSuffix(line, "\r"); l != line { // tables copied through Windows tools
			line, verbatim = l, false
		}
		if strings.TrimSpace(line) == "" {
			verbatim = false
			continue
		}
		if err := validateLine(line); err != nil {
			perrors = append(perrors, ParseError{Line: n, Text: truncate(line, 512), Err: err.Error()})
			verbatim = false
			continue
		}
		kept = append(kept, line)
		lineNos = append(lineNos, n)
	}
	in := data
	if !verbatim {
		in = strings.Join(kept, "\n")
	}

	infos, err := mountinfo.GetMountsFromReader(strings.NewReader(in), nil)
	if err != nil {
		// validateLine accepts only what mountinfo parses; if the two ever
		// disagree, say so instead of dropping the table.
		return nil, perrors, fmt.Errorf("parse mount table: %w", err)
	}
	if len(infos) != len(kept) {
		return nil, perrors, fmt.Errorf("parse mount table: %d lines gave %d mounts", len(kept), len(infos))
	}
	slab := make([]Mount, len(infos)) // one allocation for the whole table
	mounts := make([]*Mount, len(infos))
	for i, info := range infos {
		m := &slab[i]
		m.Info, m.Line = *info, lineNos[i]
		classify(m)
		mounts[i] = m
	}
	return mounts, perrors, nil
}

// validateLine checks the structure that mountinfo.GetMountsFromReader relies
// on but does not verify (it reads a non-numeric mount id as 0). It does not
// allocate for a good line: it runs on every line of every table read.
func validateLine(line string) error {
	if len(line) > maxLine {
		return fmt.Errorf("line is %d bytes, longer than %d", len(line), maxLine)
	}
	var buf [24]string
	fields := splitFields(line, buf[:0])
	if len(fields) < 10 {
		return fmt.Errorf("%d fields, want at least 10", len(fields))
	}
	if !isUint(fields[0]) {
		return fmt.Errorf("mount id %q is not a number", fields[0])
	}
	if !isUint(fields[1]) {
		return fmt.Errorf("parent id %q is not a number", fields[1])
	}
	major, minor, ok := strings.Cut(fields[2], ":")
	if !ok {
		return fmt.Errorf("major:minor %q has no colon", fields[2])
	}
	if !isUint(major) || !isUint(minor) {
		return fmt.Errorf("major:minor %q is not two numbers", fields[2])
	}
	if !strings.HasPrefix(fields[4], "/") {
		return fmt.Errorf("mount point %q is not absolute", fields[4])
	}
	sep := -1
	for i := len(fields) - 4; i > 5; i-- {
		if fields[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 {
		return errors.New(`no "-" separator before fstype, source and super options`)
	}
	if fields[sep+1] == "" {
		return errors.New("empty fstype")
	}
	return nil
}

// splitFields splits on single spaces, as the kernel writes mountinfo,
// appending to buf.
func splitFields(line string, buf []string) []string {
	for {
		f, rest, ok := strings.Cut(line, " ")
		buf = append(buf, f)
		if !ok {
			return buf
		}
		line = rest
	}
}

func isUint(s string) bool {
	if s == "" || len(s) > 10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
