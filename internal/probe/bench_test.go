package probe

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moby/sys/mountinfo"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe/probetest"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// The baseline is moby/sys/mountinfo alone on the same table: what
// ParseMountTable adds for line numbers, validation and classification is
// the difference between the two.
func BenchmarkParse20000Baseline(b *testing.B) {
	table := testenv.KubeletMountTable(20000)
	b.SetBytes(int64(len(table)))
	for b.Loop() {
		if _, err := mountinfo.GetMountsFromReader(strings.NewReader(table), nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse20000(b *testing.B) {
	table := testenv.KubeletMountTable(20000)
	b.SetBytes(int64(len(table)))
	for b.Loop() {
		if _, _, _, err := mounts.ParseMountTableLimit(strings.NewReader(table), 0); err != nil {
			b.Fatal(err)
		}
	}
}

// proberBenchTable is n FUSE connections, each with a bind mount of a
// subdirectory: 2n mounts, 2n probes per healthy round.
func proberBenchTable(b *testing.B, n int) (*mounts.Snapshot, *probetest.FS) {
	fs := probetest.NewFS()
	var lines []string
	for i := range n {
		lines = append(lines, probetest.FuseLine(10+2*i, 100+i, "/", fmt.Sprintf("/mnt/c%d", i)),
			probetest.FuseLine(11+2*i, 100+i, "/v", fmt.Sprintf("/pods/c%d", i)))
	}
	ms, _, _, err := mounts.ParseMountTableLimit(strings.NewReader(strings.Join(lines, "\n")), 0)
	if err != nil {
		b.Fatal(err)
	}
	s := mounts.IndexSnapshot(&mounts.Snapshot{Live: true, Mounts: ms})
	for _, m := range ms {
		fs.Devs[m.Mountpoint] = unix.Mkdev(uint32(m.Major), uint32(m.Minor))
	}
	return s, fs
}

// The baseline calls the same FS for every probed mount in a plain loop,
// with no deadline: what probing costs without the machinery that keeps a
// hung mount from blocking the caller.
func BenchmarkProbeRound1000Baseline(b *testing.B) {
	s, fs := proberBenchTable(b, 1000)
	for b.Loop() {
		for _, m := range s.Mounts {
			if _, err := fs.Probe("/", m.Mountpoint); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkProbeRound1000(b *testing.B) {
	s, fs := proberBenchTable(b, 1000)
	p := NewProber(Config{}, fs)
	for b.Loop() {
		if r := p.Round(context.Background(), s); len(r.Results) != 2000 {
			b.Fatalf("%d results", len(r.Results))
		}
	}
}
