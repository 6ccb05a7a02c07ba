package mounts

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/moby/sys/mountinfo"

	"github.com/mountwatchd/mountwatchd/internal/flagname"
)

// maxLine is the longest mount table line handed to mountinfo, whose scanner
// stops at bufio.MaxScanTokenSize.
const maxLine = 64*1024 - 1

// ErrMalformed is wrapped by every ParseError.
var ErrMalformed = errors.New("malformed mountinfo line")

// Bounds on a mount table read: a live table of 20,000 mounts is about 4 MiB.
const (
	// DefaultMaxTableBytes is the most bytes read from a mount table
	// (--mountinfo.max-bytes): /dev/zero or a wrong file must not grow
	// the process without end.
	DefaultMaxTableBytes = 64 << 20
	// MaxParseErrorsListed is how many unparsable lines are kept (with
	// their text); the rest are only counted.
	MaxParseErrorsListed = 100
)

// ErrTableTooLarge is returned for a table longer than its byte limit.
var ErrTableTooLarge = errors.New("mount table too large")

// ErrEmptyTable is returned for a table without a single mount: a live
// table always has the root mount, so an empty one is a wrong input.
var ErrEmptyTable = errors.New("mount table has no mounts")

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

// ParseMountTableLimit parses a mount table in /proc/<pid>/mountinfo
// format from r, reading at most maxBytes (0: DefaultMaxTableBytes; a
// longer table is ErrTableTooLarge, read no further). A malformed line
// becomes a ParseError naming its line number and does not hide the other
// mounts; it returns how many lines could not be parsed, of which the first
// MaxParseErrorsListed are listed. The error is non-nil only when r cannot
// be read or is too long.
func ParseMountTableLimit(r io.Reader, maxBytes int64) ([]*Mount, []ParseError, int, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxTableBytes
	}
	t, err := readTable(r, maxBytes, 0)
	if err != nil {
		return nil, nil, 0, err
	}
	return parseTable(t.String())
}

// parseTable parses the whole text of a mount table, as
// ParseMountTableLimit.
func parseTable(data string) ([]*Mount, []ParseError, int, error) { // every line below is a substring of data
	var (
		kept     []string // lines that validate, without "\r"
		lineNos  []int    // line number of each kept line
		perrors  []ParseError
		nerrors  int
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
			if nerrors++; len(perrors) < MaxParseErrorsListed {
				perrors = append(perrors, ParseError{Line: n, Text: truncate(line, 512), Err: err.Error()})
			}
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
		return nil, perrors, nerrors, fmt.Errorf("parse mount table: %w", err)
	}
	if len(infos) != len(kept) {
		return nil, perrors, nerrors, fmt.Errorf("parse mount table: %d lines gave %d mounts", len(kept), len(infos))
	}
	slab := make([]Mount, len(infos)) // one allocation for the whole table
	mounts := make([]*Mount, len(infos))
	for i, info := range infos {
		m := &slab[i]
		m.Info, m.Line = *info, lineNos[i]
		classify(m)
		mounts[i] = m
	}
	return mounts, perrors, nerrors, nil
}

// Chunks of a table read: the first is small (a table is usually tens of
// KiB), or the size of the table read last time, each next one twice the
// last, up to maxTableChunk.
const (
	firstTableChunk = 64 << 10
	maxTableChunk   = 4 << 20
)

// rawTable is a table as read: its chunks, their length and a digest of
// them.
type rawTable struct {
	chunks [][]byte
	size   int64 // bytes
	sum    tableSum
}

// tableSum is the SHA-256 of a table's bytes: two reads with the same sum
// read the same table. A cryptographic hash because a collision would hide
// a change of the table for as long as it lasted, and whoever names a pod
// volume chooses part of the table's text; at 10,000 mounts it costs about
// a millisecond a read.
type tableSum [sha256.Size]byte

// readTable reads r to its end, or fails with ErrTableTooLarge once it read
// more than maxBytes. It reads into chunks that it never copies or regrows
// (String joins them once), so a table that hits the cap (/dev/zero) costs
// the cap and one chunk, and one under it twice its size; io.ReadAll's
// doubling and the string copy after it took 176 MB for the 64 MiB cap.
// The chunks are hashed as they come, so that a table read again can be
// told unchanged without being joined or parsed. last is the size of the
// table read last time (0: none): a table read again is usually that size,
// and read into one chunk a little larger, not into the doubling chunks
// (twice its size in all, for a 10,000-mount table; the daemon re-reads
// it every minute).
func readTable(r io.Reader, maxBytes, last int64) (*rawTable, error) {
	t := &rawTable{}
	h := sha256.New()
	size := max(int64(firstTableChunk), last+last/64+4096)
	for {
		c := make([]byte, min(size, maxBytes+1-t.size))
		n, err := io.ReadFull(r, c)
		t.size += int64(n)
		t.chunks = append(t.chunks, c[:n])
		if t.size > maxBytes {
			return nil, fmt.Errorf("%w: more than %d bytes (--"+flagname.MaxTableBytes+")", ErrTableTooLarge, maxBytes)
		}
		h.Write(c[:n])
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		size = min(2*size, maxTableChunk)
	}
	h.Sum(t.sum[:0])
	return t, nil
}

// String is the table's text, its chunks joined.
func (t *rawTable) String() string {
	if len(t.chunks) == 1 {
		return string(t.chunks[0])
	}
	var b strings.Builder
	b.Grow(int(t.size))
	for _, c := range t.chunks {
		b.Write(c)
	}
	return b.String()
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
