package mounts

import (
	"crypto/sha256"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

func parseFile(t *testing.T, name string) ([]*Mount, []ParseError) {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mounts, perrs, _, err := ParseMountTableLimit(f, 0)
	if err != nil {
		t.Fatalf("ParseMountTableLimit(%s): %v", name, err)
	}
	return mounts, perrs
}

func findMount(t *testing.T, mounts []*Mount, mountpoint string) *Mount {
	t.Helper()
	for _, m := range mounts {
		if m.Mountpoint == mountpoint {
			return m
		}
	}
	t.Fatalf("no mount at %q", mountpoint)
	return nil
}

func TestParseCapturedTables(t *testing.T) {
	for name, want := range map[string]int{
		"host-vm-6.18.mountinfo":           20,
		"capture-bindfs-deleted.mountinfo": 33,
		"k8s-node-brief.mountinfo":         14,
		"nspawn-systemd-252.mountinfo":     48,
	} {
		t.Run(name, func(t *testing.T) {
			mounts, perrs := parseFile(t, name)
			if len(perrs) != 0 {
				t.Errorf("parse errors in a real table: %v", perrs)
			}
			if len(mounts) != want {
				t.Errorf("got %d mounts, want %d", len(mounts), want)
			}
			for i, m := range mounts {
				if m.Line != i+1 {
					t.Errorf("mount %d has line %d", i, m.Line)
				}
			}
		})
	}
}

func TestParseEscapesAndClassification(t *testing.T) {
	mounts, _ := parseFile(t, "capture-bindfs-deleted.mountinfo")

	for _, mp := range []string{"/w/dir with space", "/w/tab\tname", "/w/back\\slash", "/w/new\nline"} {
		findMount(t, mounts, mp)
	}
	if m := findMount(t, mounts, "/w/dir with space"); m.Source != "src with space" {
		t.Errorf("source %q, want unescaped %q", m.Source, "src with space")
	}
	if m := findMount(t, mounts, "/w/shared"); m.Optional != "shared:1" {
		t.Errorf("optional fields %q, want shared:1", m.Optional)
	}

	fuse := findMount(t, mounts, "/w/fuse")
	if !fuse.FUSE || !fuse.CephFUSE || fuse.Overlay || fuse.Network {
		t.Errorf("fuse.ceph-fuse classified as %+v", fuse)
	}
	if fuse.Dev() != "0:43" {
		t.Errorf("Dev() = %q, want 0:43", fuse.Dev())
	}
	if tm := findMount(t, mounts, "/w/t"); tm.FUSE || tm.CephFUSE {
		t.Errorf("tmpfs classified as FUSE")
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		fstype, source         string
		fuse, ceph, ovl, netfs bool
	}{
		{"fuse", "sshfs#x", true, false, false, false},
		{"fuseblk", "/dev/sdb1", true, false, false, false},
		{"fuse.s3fs", "s3fs", true, false, false, false},
		{"fuse.ceph-fuse", "ceph-fuse", true, true, false, false},
		{"fuse", "ceph-fuse", true, true, false, false},
		{"fusectl", "none", false, false, false, false},
		{"overlay", "overlay", false, false, true, false},
		{"nfs4", "srv:/x", false, false, false, true},
		{"ceph", "10.0.0.1:/", false, false, false, true},
		{"tmpfs", "ceph-fuse", false, false, false, false},
	} {
		m := &Mount{}
		m.FSType, m.Source = c.fstype, c.source
		classify(m)
		if m.FUSE != c.fuse || m.CephFUSE != c.ceph || m.Overlay != c.ovl || m.Network != c.netfs {
			t.Errorf("%s/%s: got fuse=%v ceph=%v overlay=%v net=%v", c.fstype, c.source, m.FUSE, m.CephFUSE, m.Overlay, m.Network)
		}
	}
}

func TestParseEmptySource(t *testing.T) {
	table := "30 1 0:50 / /mnt/empty rw,relatime - fuse.sshfs  rw,user_id=0\n"
	mounts, perrs, _, err := ParseMountTableLimit(strings.NewReader(table), 0)
	if err != nil || len(perrs) != 0 || len(mounts) != 1 {
		t.Fatalf("got %d mounts, %v, %v", len(mounts), perrs, err)
	}
	if m := mounts[0]; m.Source != "" || m.FSType != "fuse.sshfs" || m.VFSOptions != "rw,user_id=0" {
		t.Errorf("got source %q fstype %q super options %q", m.Source, m.FSType, m.VFSOptions)
	}
}

func TestParseMalformedLines(t *testing.T) {
	good := "25 1 0:23 / /good rw - tmpfs none rw"
	for _, c := range []struct {
		name, line, wantErr string
	}{
		{"too few fields", "25 1 0:23 / /x rw - tmpfs", "fields"},
		{"mount id not a number", "x5 1 0:23 / /x rw - tmpfs none rw", "mount id"},
		{"parent id not a number", "25 -1 0:23 / /x rw - tmpfs none rw", "parent id"},
		{"no colon in major:minor", "25 1 023 / /x rw - tmpfs none rw", "major:minor"},
		{"major not a number", "25 1 a:23 / /x rw - tmpfs none rw", "major:minor"},
		{"relative mount point", "25 1 0:23 / x rw - tmpfs none rw", "not absolute"},
		{"no separator", "25 1 0:23 / /x rw shared:1 master:2 tmpfs none rw", "separator"},
		{"empty fstype", "25 1 0:23 / /x rw -  none rw", "empty fstype"},
		{"too long", "25 1 0:23 / /x rw - overlay none lowerdir=" + strings.Repeat("a", 70000), "longer than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			table := good + "\n" + c.line + "\n" + strings.Replace(good, "/good", "/after", 1) + "\n"
			mounts, perrs, _, err := ParseMountTableLimit(strings.NewReader(table), 0)
			if err != nil {
				t.Fatalf("whole table failed: %v", err)
			}
			if len(mounts) != 2 || mounts[0].Mountpoint != "/good" || mounts[1].Mountpoint != "/after" || mounts[1].Line != 3 {
				t.Fatalf("malformed line hid other mounts: %d mounts", len(mounts))
			}
			if len(perrs) != 1 || perrs[0].Line != 2 || !strings.Contains(perrs[0].Err, c.wantErr) {
				t.Fatalf("got parse errors %v, want one on line 2 mentioning %q", perrs, c.wantErr)
			}
			if !errors.Is(perrs[0], ErrMalformed) || !strings.Contains(perrs[0].Error(), "line 2") {
				t.Errorf("error %q does not name line 2 or wrap ErrMalformed", perrs[0].Error())
			}
		})
	}
}

func TestParseCRLFAndBlankLines(t *testing.T) {
	table := "25 1 0:23 / /a rw - tmpfs none rw\r\n\r\n26 1 0:24 / /b rw - tmpfs none rw\r\n"
	mounts, perrs, _, err := ParseMountTableLimit(strings.NewReader(table), 0)
	if err != nil || len(perrs) != 0 || len(mounts) != 2 {
		t.Fatalf("got %d mounts, %v, %v", len(mounts), perrs, err)
	}
	if mounts[1].Line != 3 || mounts[1].VFSOptions != "rw" {
		t.Errorf("second mount: line %d super options %q", mounts[1].Line, mounts[1].VFSOptions)
	}
}

// A node with thousands of pods has tens of thousands of mounts; procfs once
// broke on tables over 1 MiB (prometheus/procfs TestReadMountInfoExceeds1MiB).
func TestParseTwentyThousandLines(t *testing.T) {
	table := testenv.KubeletMountTable(20000)
	if len(table) < 1<<20 {
		t.Fatalf("table is only %d bytes", len(table))
	}
	mounts, perrs, _, err := ParseMountTableLimit(strings.NewReader(table), 0)
	if err != nil || len(perrs) != 0 {
		t.Fatalf("%v %v", perrs, err)
	}
	if len(mounts) != 20000 || mounts[19999].Line != 20000 {
		t.Fatalf("got %d mounts", len(mounts))
	}
}

// A table of exactly the cap is read; one byte more is ErrTableTooLarge,
// also when the reader hands out a byte at a time.
func TestParseTableCap(t *testing.T) {
	table := testenv.KubeletMountTable(2000)
	n := int64(len(table))
	if mounts, _, _, err := ParseMountTableLimit(iotest.OneByteReader(strings.NewReader(table)), n); err != nil || len(mounts) != 2000 {
		t.Fatalf("table of the cap's %d bytes: %d mounts, %v", n, len(mounts), err)
	}
	if _, _, _, err := ParseMountTableLimit(strings.NewReader(table), n-1); !errors.Is(err, ErrTableTooLarge) {
		t.Fatalf("table one byte over the cap: %v, want ErrTableTooLarge", err)
	}
}

// /dev/zero under the default 64 MiB cap is refused having allocated about
// the cap once: io.ReadAll's doubling allocated more than twice the cap
// (and the process peaked at 176 MB); --once's peak RSS is in BENCHMARKS.md.
func TestParseDevZeroAllocatesTheCapOnce(t *testing.T) {
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, _, err = ParseMountTableLimit(f, DefaultMaxTableBytes)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTableTooLarge) {
		t.Fatalf("/dev/zero: %v, want ErrTableTooLarge", err)
	}
	if got, most := after.TotalAlloc-before.TotalAlloc, uint64(DefaultMaxTableBytes+2*maxTableChunk); got > most {
		t.Fatalf("/dev/zero allocated %d bytes for a cap of %d (at most %d)", got, DefaultMaxTableBytes, most)
	}
}

// A table read again at the size it had is read into one chunk, not the
// doubling ones (about twice its size); one that grew still reads to its
// end, and its digest is that of its bytes, however it was read.
func TestReadTableAgainAtItsSize(t *testing.T) {
	table := testenv.KubeletMountTable(2000)
	n := int64(len(table))
	first, err := readTable(strings.NewReader(table), DefaultMaxTableBytes, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.chunks) < 3 {
		t.Fatalf("a %d-byte table read in %d chunks: the test needs a table of several", n, len(first.chunks))
	}
	again, err := readTable(strings.NewReader(table), DefaultMaxTableBytes, first.size)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.chunks) != 1 || again.size != n || again.sum != first.sum || again.String() != table {
		t.Errorf("read again: %d chunks, %d bytes (table %d), same digest %v", len(again.chunks), again.size, n, again.sum == first.sum)
	}
	grown := table + table
	g, err := readTable(iotest.OneByteReader(strings.NewReader(grown)), DefaultMaxTableBytes, first.size)
	if err != nil {
		t.Fatal(err)
	}
	if g.String() != grown || g.sum == first.sum || g.sum != sha256.Sum256([]byte(grown)) {
		t.Errorf("grown table: %d bytes read of %d, digest of its bytes %v", g.size, len(grown), g.sum == sha256.Sum256([]byte(grown)))
	}
}
