package probe

import (
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

// The baseline is moby/sys/mountinfo alone on the same table: what
// ParseMountTable adds for line numbers, validation and classification is
// the difference between the two.
func BenchmarkParse20000Baseline(b *testing.B) {
	table := bigTable(20000)
	b.SetBytes(int64(len(table)))
	for b.Loop() {
		if _, err := mountinfo.GetMountsFromReader(strings.NewReader(table), nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse20000(b *testing.B) {
	table := bigTable(20000)
	b.SetBytes(int64(len(table)))
	for b.Loop() {
		if _, _, err := ParseMountTable(strings.NewReader(table)); err != nil {
			b.Fatal(err)
		}
	}
}
