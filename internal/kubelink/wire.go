package kubelink

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/mountwatchd/mountwatchd/internal/finding"
)

// Snapshot is what the daemon knows that the API server is told: the
// warning and critical findings of its latest state.
type Snapshot struct {
	// Complete is true once every check has run at least once: a problem
	// not yet probed is not an absent one, so the condition and the taint
	// wait for it.
	Complete bool              `json:"complete"`
	Findings []finding.Finding `json:"findings"`
}

// NewSnapshot keeps the findings the API server is told of: warning and
// critical ones.
func NewSnapshot(findings []finding.Finding, complete bool) *Snapshot {
	s := &Snapshot{Complete: complete, Findings: []finding.Finding{}}
	for i := range findings {
		if findings[i].Severity.Rank() >= finding.Warning.Rank() {
			s.Findings = append(s.Findings, findings[i])
		}
	}
	return s
}

// message is one line from the daemon to the helper: a snapshot, or the
// word that the daemon stops cleanly (an end of input without it is the
// daemon gone: the helper then clears nothing).
type message struct {
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	Stop     bool      `json:"stop,omitempty"`
}

// MaxMessage bounds one line from the daemon (a snapshot of many
// thousands of findings fits).
const MaxMessage = 64 << 20

// Reader reads the daemon's messages on the helper's side.
type Reader struct{ r *bufio.Reader }

// NewReader reads messages from r (the helper's standard input).
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 64<<10)} }

// Next returns the next snapshot; stop is true when the daemon said it
// stops cleanly, and err is io.EOF when its end of the pipe closed.
func (r *Reader) Next() (s *Snapshot, stop bool, err error) {
	var line []byte
	for {
		chunk, err := r.r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxMessage {
			return nil, false, fmt.Errorf("a message from the daemon longer than %d bytes", MaxMessage)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		break
	}
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, false, fmt.Errorf("a message from the daemon: %w", err)
	}
	if m.Stop {
		return nil, true, nil
	}
	if m.Snapshot == nil {
		return nil, false, fmt.Errorf("a message from the daemon with neither a snapshot nor stop: %.100q", line)
	}
	return m.Snapshot, false, nil
}

func encodeMessage(m message) ([]byte, error) {
	b, err := json.Marshal(m)
	return append(b, '\n'), err
}

// The helper's metrics travel to the daemon as frames on its standard
// output: a line "metrics <n>" and n bytes of Prometheus' text format.
const (
	framePrefix = "metrics "
	maxFrame    = 4 << 20
)

// WriteMetrics writes one frame of metrics text to w (the helper's
// standard output).
func WriteMetrics(w io.Writer, text []byte) error {
	if _, err := fmt.Fprintf(w, "%s%d\n", framePrefix, len(text)); err != nil {
		return err
	}
	_, err := w.Write(text)
	return err
}

// readFrame reads one frame of metrics text from the helper.
func readFrame(r *bufio.Reader) ([]byte, error) {
	head, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	head = strings.TrimSuffix(head, "\n")
	n, err := strconv.Atoi(strings.TrimPrefix(head, framePrefix))
	if !strings.HasPrefix(head, framePrefix) || err != nil || n < 0 || n > maxFrame {
		return nil, fmt.Errorf("mountwatchd-kube wrote %.80q, not a metrics frame of at most %d bytes", head, maxFrame)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}
