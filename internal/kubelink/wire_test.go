package kubelink

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReaderBadInput(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"not json\n", "a message from the daemon: invalid character"},
		{"{}\n", "neither a snapshot nor stop"},
		{`{"snapshot":{"complete":true,"findings":[]}}` + "\n" + `{"stop":true}` + "\n", ""},
	} {
		r := NewReader(strings.NewReader(c.in))
		_, _, err := r.Next()
		if c.want == "" {
			if err != nil {
				t.Errorf("%q: %v", c.in, err)
			}
			if _, stop, err := r.Next(); !stop || err != nil {
				t.Errorf("%q: second message stop=%v err=%v", c.in, stop, err)
			}
			if _, _, err := r.Next(); !errors.Is(err, io.EOF) {
				t.Errorf("%q: after the stop: %v, want EOF", c.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.in, err, c.want)
		}
	}
}

// A line without end is refused past MaxMessage, not read into memory
// whole.
func TestReaderBoundsALine(t *testing.T) {
	r := NewReader(io.LimitReader(zeros{}, MaxMessage+1<<20))
	_, _, err := r.Next()
	if err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("an endless line: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '0'
	}
	return len(p), nil
}

func TestReadFrameRefusesGarbage(t *testing.T) {
	for _, in := range []string{"hello\n", "metrics -1\n", "metrics 99999999999\n"} {
		if _, err := readFrame(bufio.NewReader(strings.NewReader(in))); err == nil || !strings.Contains(err.Error(), "not a metrics frame") {
			t.Errorf("%q: %v", in, err)
		}
	}
}
