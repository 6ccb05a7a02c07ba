package daemon

import (
	"context"
	"os"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// BenchmarkTableIteration is the work of one loop iteration on an
// unchanged 20,000-mount table with 2,000 problems (what every --interval
// costs when nothing changed): read and classify the table, run the table
// checks, merge, stamp and publish. The baseline is reading and classifying
// the same table alone (mounts.RereadSnapshot).
func BenchmarkTableIteration(b *testing.B) {
	dir := b.TempDir()
	if err := os.MkdirAll(dir+"/self", 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(dir+"/self/mountinfo", []byte(testenv.KubeletMountTable(20000)), 0o644); err != nil {
		b.Fatal(err)
	}
	host := mounts.Host{Procfs: dir, KubeletRoot: "/var/lib/kubelet", PodLogDir: dir + "/nonexistent"}
	b.Run("baseline-read-snapshot", func(b *testing.B) {
		for b.Loop() {
			if _, err := mounts.RereadSnapshot(host, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("loop-iteration", func(b *testing.B) {
		d := New(Config{Host: host, Checks: []check.Check{check.DeletedRootCheck{}}})
		ctx := context.Background()
		if err := d.readTable(ctx); err != nil {
			b.Fatal(err)
		}
		if n := len(d.State().Report.Findings); n != 2000 {
			b.Fatalf("%d findings, want 2000", n)
		}
		for b.Loop() {
			if err := d.readTable(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
