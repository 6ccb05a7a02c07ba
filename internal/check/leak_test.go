package check

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

func leaksOf(fs []finding.Finding, kind string) []finding.Finding {
	var out []finding.Finding
	for _, f := range fs {
		if f.Check == MountLeak && f.Details["kind"] == kind {
			out = append(out, f)
		}
	}
	return out
}

// A remount loop: 100 bind mounts stacked on one kubelet pod volume's mount
// point are one finding naming the point, the count and the pod, for as
// long as they are there; unmounted, it clears.
func TestMountLeakStacked(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	kubelet := dir + "/kubelet"
	const uid = "11111111-2222-4333-8444-555555555555"
	mp := testenv.KubeletPodVolume(t, kubelet, uid, "pvc-loop", "cephfs.csi.ceph.com", "h1")
	src := dir + "/src"
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	h := mounts.Host{KubeletRoot: kubelet, PodLogDir: dir + "/logs"}
	c := &MountLeakCheck{MountMaxPath: "/proc/sys/fs/mount-max"}
	run := func() []finding.Finding {
		t.Helper()
		found, err := runOne(c, snapshotFor(t, h))
		if err != nil {
			t.Fatal(err)
		}
		return found
	}
	if f := run(); len(f) != 0 {
		t.Fatalf("before the loop: %+v", f)
	}
	stacked := 0
	t.Cleanup(func() {
		for range stacked {
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	})
	for i := range 100 {
		if err := syscall.Mount(src, mp, "", syscall.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		stacked++
		f := leaksOf(run(), "stacked")
		if i+1 <= DefaultMaxStacked {
			if len(f) != 0 {
				t.Fatalf("%d stacked (threshold %d): %+v", i+1, DefaultMaxStacked, f)
			}
			continue
		}
		if len(f) != 1 || f[0].MountPoint != mp || f[0].Details["count"] != strconv.Itoa(i+1) || f[0].PodUID != uid || f[0].Volume != "pvc-loop" {
			t.Fatalf("%d stacked: %+v", i+1, f)
		}
		// Tracked from the first read that saw a stack (of 2).
		if i == 99 && (f[0].Details["first_count"] != "2" || f[0].Details["growth"] != "98") {
			t.Errorf("growth since first seen: %v", f[0].Details)
		}
	}
	for stacked > 0 {
		if err := syscall.Unmount(mp, 0); err != nil {
			t.Fatal(err)
		}
		stacked--
	}
	if f := run(); len(f) != 0 {
		t.Fatalf("unmounted: %+v", f)
	}
}

// A leak that adds a mount of one source on every read of the table: bind
// mounts of one directory to new points in pods (one filesystem and root),
// and FUSE mounts of one source made afresh (a new connection each, the
// shape of a FUSE CSI plugin retrying). Each is found once it grew by the
// threshold without coming down, names the count, the growth and the pod,
// and clears when the mounts go.
func TestMountLeakGrowing(t *testing.T) {
	testenv.RequireRoot(t)
	for _, fuse := range []bool{false, true} {
		name := "bind"
		if fuse {
			name = "fuse"
			testenv.RequireCommand(t, "bindfs", "bindfs")
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			testenv.Tmpfs(t, dir)
			kubelet := dir + "/kubelet"
			src := dir + "/src"
			if err := os.Mkdir(src, 0o755); err != nil {
				t.Fatal(err)
			}
			h := mounts.Host{KubeletRoot: kubelet, PodLogDir: dir + "/logs"}
			growth := 12
			if fuse {
				growth = 6
			}
			c := &MountLeakCheck{Config: LeakConfig{Growth: growth}, MountMaxPath: "/proc/sys/fs/mount-max"}
			var points []string
			var procs []*os.Process
			unmount := func() {
				for _, p := range points {
					_ = syscall.Unmount(p, syscall.MNT_DETACH)
				}
				for _, p := range procs {
					_ = p.Kill()
				}
			}
			t.Cleanup(unmount)
			var uid string
			for i := range growth + 3 {
				uid = testenv.PodUID(i)
				mp := filepath.Join(kubelet, "pods", uid, "volumes/kubernetes.io~csi/pvc-x/mount")
				if fuse {
					procs = append(procs, testenv.Bindfs(t, src, mp, "subtype=s3fs"))
				} else {
					if err := os.MkdirAll(mp, 0o755); err != nil {
						t.Fatal(err)
					}
					if err := syscall.Mount(src, mp, "", syscall.MS_BIND, ""); err != nil {
						t.Fatal(err)
					}
				}
				points = append(points, mp)
				found, err := runOne(c, snapshotFor(t, h))
				if err != nil {
					t.Fatal(err)
				}
				f := leaksOf(found, "growing")
				// A group from its second mount: grown by i-1 at the i-th read.
				if i-1 < growth {
					if len(f) != 0 {
						t.Fatalf("%d mounts: %+v", i+1, f)
					}
					continue
				}
				if len(f) != 1 || f[0].Details["count"] != strconv.Itoa(i+1) || f[0].PodUID != uid {
					t.Fatalf("%d mounts: %+v", i+1, f)
				}
				if fuse && (f[0].FSType != "fuse.s3fs" || f[0].Source != src) {
					t.Fatalf("FUSE mounts of one source on new connections: %+v", f[0])
				}
				if f[0].Details["first_count"] != "2" || f[0].Details["growth"] != strconv.Itoa(i+1-2) {
					t.Errorf("growth: %v", f[0].Details)
				}
			}
			// One goes: the growth came down; all go: nothing left.
			if err := syscall.Unmount(points[len(points)-1], syscall.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			found, _ := runOne(c, snapshotFor(t, h))
			if f := leaksOf(found, "growing"); len(f) != 0 {
				t.Fatalf("after an unmount, the count came down: %+v", f)
			}
			unmount()
			found, _ = runOne(c, snapshotFor(t, h))
			if len(found) != 0 {
				t.Fatalf("unmounted: %+v", found)
			}
		})
	}
}

// The table at its share of fs.mount-max: warning at 80%, critical at 95%,
// nothing below; the size and growth are the check's TableStats.
func TestMountLeakTableSize(t *testing.T) {
	testenv.RequireRoot(t)
	s := snapshotFor(t, mounts.Host{KubeletRoot: "/nonexistent"})
	size := len(s.Mounts) + s.ParseErrorTotal()
	dir := t.TempDir()
	for max, want := range map[int]finding.Severity{size * 2: "", size + size/10: finding.Warning, size: finding.Critical, size - 1: finding.Critical} {
		p := filepath.Join(dir, strconv.Itoa(max))
		if err := os.WriteFile(p, []byte(strconv.Itoa(max)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		c := &MountLeakCheck{MountMaxPath: p}
		out := c.Run(context.Background(), &Env{Snapshot: s})
		if out.Err != nil {
			t.Fatal(out.Err)
		}
		f := leaksOf(out.Findings, "table_size")
		switch {
		case want == "" && len(f) != 0:
			t.Errorf("%d of max %d: %+v", size, max, f)
		case want != "" && (len(f) != 1 || f[0].Severity != want || f[0].Details["count"] != strconv.Itoa(size)):
			t.Errorf("%d of max %d: %+v, want %s", size, max, f, want)
		}
		if st := out.Table; st == nil || st.Size != size || st.MountMax != max || st.Growth != 0 {
			t.Errorf("stats %+v", st)
		}
	}
	// An unreadable or nonsense mount-max is an error naming it, and the
	// rest of the check still runs.
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("lots"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A missing one (a procfs without it) is a note.
	for _, p := range []string{bad, filepath.Join(dir, "missing")} {
		c := &MountLeakCheck{MountMaxPath: p}
		out := c.Run(context.Background(), &Env{Snapshot: s})
		if p == bad && (out.Err == nil || !strings.Contains(out.Err.Error(), `"lots"`)) {
			t.Errorf("mount-max %s: error %v, want one naming what it holds", p, out.Err)
		}
		if p != bad && (out.Err != nil || len(out.Notes) != 1 || !strings.Contains(out.Notes[0], "fs.mount-max")) {
			t.Errorf("mount-max %s: error %v, notes %q; want a note", p, out.Err, out.Notes)
		}
		if st := out.Table; st == nil || st.Size != size || st.MountMax != 0 {
			t.Errorf("mount-max %s: stats %+v", p, st)
		}
	}
}

// Every captured real table, read any number of times, has no leak.
func TestMountLeakCapturedTables(t *testing.T) {
	files, err := filepath.Glob("../mounts/testdata/*.mountinfo")
	if err != nil || len(files) == 0 {
		t.Fatalf("no captured tables: %v", err)
	}
	for _, file := range files {
		s, err := mounts.ReadCapturedTable(file, mounts.Host{KubeletRoot: mounts.DefaultKubeletRoot})
		if err != nil {
			t.Fatal(err)
		}
		var st *LeakState
		for i := range 5 {
			s.Taken = time.Unix(int64(i), 0)
			var found []finding.Finding
			found, st, _ = FindLeaks(s, st, LeakConfig{}, 100000)
			if len(found) != 0 {
				t.Errorf("%s, read %d: %+v", file, i, found)
			}
		}
	}
}

// A node-scale table shaped as make bench's (2,000 mounts here, to keep the
// suite short; BenchmarkTableLane asserts the same at 10,000 and 50,000)
// has no leak, read after read.
func TestMountLeakScaleNode(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "bindfs", "bindfs")
	n := testenv.NewScaleNode(t, filepath.Join(t.TempDir(), "node"))
	n.AddFUSE(t, 5, 4)
	n.AddOverlays(t, 5)
	n.AddPods(t, (2000-testenv.MountCount(t))/2, 2)
	h := mounts.Host{KubeletRoot: n.Kubelet, PodLogDir: n.PodLogs}
	c := &MountLeakCheck{}
	for range 3 {
		s := snapshotFor(t, h)
		if len(s.Mounts) < 1900 {
			t.Fatalf("%d mounts", len(s.Mounts))
		}
		found, err := runOne(c, s)
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != 0 {
			t.Fatalf("%d mounts: %+v", len(s.Mounts), found[0])
		}
	}
}
