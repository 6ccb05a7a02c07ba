package check

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// layers makes layer directories under dir from a spec: for each layer,
// the entries below it ("func/", "func/a", "func/.wh:gone" for a whiteout
// device) and the opaque value to set on each directory.
func layers(t *testing.T, dir string, spec map[string][]string, opaque map[string]string) {
	t.Helper()
	for layer, entries := range spec {
		for _, e := range entries {
			if name, ok := strings.CutPrefix(e, "wh:"); ok {
				mkfiles(t, dir+"/"+layer, name[:strings.LastIndex(name, "/")+1])
				if err := unix.Mknod(dir+"/"+layer+"/"+name, unix.S_IFCHR, 0); err != nil {
					t.Fatal(err)
				}
				continue
			}
			mkfiles(t, dir+"/"+layer, e)
		}
	}
	for p, v := range opaque {
		setxattr(t, dir+"/"+p, "trusted.overlay.opaque", v)
	}
}

// Hidden entries are what the upper marker hides that the container would
// otherwise see: entries of the run of opaque layers below it, not
// overridden by the upper layer and not whiteouts. These layers are not
// containerd snapshots, so no marker can be verified against an image
// layer: every finding is a warning that says so (the real containerd tests
// in cmd/mountwatchd cover verified markers).
func TestOpaqueHiddenEntries(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range []struct {
		name     string
		spec     map[string][]string
		opaque   map[string]string
		chain    string // lowerdir, top first
		sev      finding.Severity
		hidden   string
		nlayers  string
		noFinds  bool
		upperDir string
		// lowerPair: the marker that could not be verified is B's, not the
		// upper's
		lowerPair bool
	}{
		{name: "hides nothing", chain: "C:B:A",
			spec:   map[string][]string{"A": {"func/min"}, "B": {"func/max"}, "C": {"func/max"}},
			opaque: map[string]string{"B/func": "y", "C/func": "y"}, sev: finding.Warning, hidden: "0", nlayers: "2"},
		{name: "whiteouts are not entries", chain: "C:B:A",
			spec:   map[string][]string{"A": {"func/min", "func/gone"}, "B": {"func/max", "func/max2", "wh:func/gone"}, "C": {"func/max"}},
			opaque: map[string]string{"B/func": "y", "C/func": "y"}, sev: finding.Warning, hidden: "1", nlayers: "2"},
		{name: "run of three", chain: "D:C:B:A",
			spec:   map[string][]string{"A": {"func/a"}, "B": {"func/b"}, "C": {"func/c"}, "D": {"func/d"}},
			opaque: map[string]string{"B/func": "y", "C/func": "y", "D/func": "y"}, sev: finding.Warning, hidden: "2", nlayers: "3"},
		{name: "nested directory", chain: "C:B:A",
			spec:   map[string][]string{"A": {"usr/lib/x/a"}, "B": {"usr/lib/x/b"}, "C": {"usr/lib/x/c"}},
			opaque: map[string]string{"B/usr/lib/x": "y", "C/usr/lib/x": "y"}, sev: finding.Warning, hidden: "1", nlayers: "2"},
		{name: "xwhiteouts marker x is not opaque", chain: "C:B:A",
			spec:   map[string][]string{"A": {"func/min"}, "B": {"func/max"}, "C": {"func/new"}},
			opaque: map[string]string{"B/func": "y", "C/func": "x"}, noFinds: true},
		{name: "x below y", chain: "C:B:A",
			spec:   map[string][]string{"A": {"func/min"}, "B": {"func/max"}, "C": {"func/new"}},
			opaque: map[string]string{"B/func": "x", "C/func": "y"}, noFinds: true},
		{name: "opaque two layers apart", chain: "C:B:A",
			spec:   map[string][]string{"A": {"func/min"}, "B": {"other"}, "C": {"func/new"}},
			opaque: map[string]string{"A/func": "y", "C/func": "y"}, noFinds: true},
		// The container removed and recreated func over an image whose top
		// layer had it opaque: the kernel (4.8+) marks it opaque in the
		// writable upper, as the container asked. Not a finding.
		{name: "upper dir over an opaque lower", chain: "B:A", upperDir: "C",
			spec:   map[string][]string{"A": {"func/min"}, "B": {"func/max"}, "C": {"func/new"}, "W": {}},
			opaque: map[string]string{"B/func": "y", "C/func": "y"}, noFinds: true},
		// The same over a lower pair that cannot be verified: a warning
		// naming the lower marker, hiding nothing the container did not
		// hide itself.
		{name: "upper dir over an opaque lower pair", chain: "B:A", upperDir: "C",
			spec:   map[string][]string{"A": {"func/min"}, "B": {"func/max"}, "C": {"func/new"}, "W": {}},
			opaque: map[string]string{"A/func": "y", "B/func": "y", "C/func": "y"}, sev: finding.Warning, hidden: "0", nlayers: "3", lowerPair: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			testenv.Tmpfs(t, dir)
			layers(t, dir, c.spec, c.opaque)
			var ls []string
			for _, l := range strings.Split(c.chain, ":") {
				ls = append(ls, dir+"/"+l)
			}
			opts := "lowerdir=" + strings.Join(ls, ":")
			top := ls[0]
			if c.upperDir != "" {
				mkfiles(t, dir, "W/")
				opts += ",upperdir=" + dir + "/" + c.upperDir + ",workdir=" + dir + "/W"
				top = dir + "/" + c.upperDir
			}
			overlay(t, dir+"/merged", opts)
			found, err := runOne(&OpaquePropagationCheck{}, liveSnapshot(t, mounts.Host{}))
			if err != nil {
				t.Fatal(err)
			}
			got := findingsAt(found, OpaquePropagation, dir+"/merged")
			if c.noFinds {
				if len(got) != 0 {
					t.Fatalf("false positive: %+v", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("%d findings, want 1: %+v", len(got), found)
			}
			f := got[0]
			if f.Severity != c.sev || f.Details["hidden_entries"] != c.hidden || f.Details["opaque_layers"] != c.nlayers ||
				f.Details["upper_layer"] != top {
				t.Errorf("severity %s details %v", f.Severity, f.Details)
			}
			// The directory as the merged view shows it: what its series names.
			if f.Directory != dir+"/merged"+f.Details["directory"] || f.Details["directory"] == "" {
				t.Errorf("directory %q, details %v", f.Directory, f.Details)
			}
			if c.upperDir != "" && f.Details["upper_role"] != "upper" {
				t.Errorf("upper_role %q", f.Details["upper_role"])
			}
			reason := "is not a snapshot of containerd's overlayfs snapshotter"
			if c.upperDir != "" && !c.lowerPair {
				reason = "writable upper layer"
			}
			unverified := top
			if c.lowerPair {
				unverified = dir + "/B"
			}
			if f.Details["verification"] != "unverified" || f.Details["unverified_layer"] != unverified ||
				!strings.Contains(f.Details["unverified_reason"], reason) || !strings.Contains(f.Message, "could not be verified") {
				t.Errorf("verification: %v\n%s", f.Details, f.Message)
			}
		})
	}
}

// containerd's layout: snapshots <root>/<id>/fs, a task rootfs mounted with
// lowerdirs relative to the snapshotter root from a process working there
// (as containerd's mount helper does when the options get long). The
// kernel prints the relative paths; the check resolves them against its
// configured root and names the container. With the wrong root the layers
// cannot be found: an error naming the mount, and the findings on the other
// overlay are still returned.
func TestOpaqueRelativeLowerdirs(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	snap := dir + "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"
	layers(t, snap, map[string][]string{"1/fs": {"func/min"}, "2/fs": {"func/max"}, "3/fs": {"func/"}},
		map[string]string{"2/fs/func": "y", "3/fs/func": "y"})
	rootfs := dir + "/run/containerd/io.containerd.runtime.v2.task/k8s.io/f00dcafe/rootfs"
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("mount", "-t", "overlay", "overlay", "-o", "lowerdir=3/fs:2/fs:1/fs", rootfs)
	cmd.Dir = snap
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = unix.Unmount(rootfs, unix.MNT_DETACH) })
	line := ""
	for _, m := range liveSnapshot(t, mounts.Host{}).Mounts {
		if m.Mountpoint == rootfs {
			line = m.VFSOptions
		}
	}
	if !strings.Contains(line, "lowerdir=3/fs:2/fs:1/fs") {
		t.Fatalf("the kernel did not print the relative lowerdirs: %q", line)
	}

	found, err := runOne(&OpaquePropagationCheck{SnapshotRoot: snap}, liveSnapshot(t, mounts.Host{}))
	if err != nil {
		t.Fatal(err)
	}
	got := findingsAt(found, OpaquePropagation, rootfs)
	if len(got) != 1 || got[0].Details["container"] != "f00dcafe" || got[0].Details["container_namespace"] != "k8s.io" ||
		got[0].Details["upper_layer"] != snap+"/3/fs" || got[0].Details["hidden_entries"] != "1" {
		t.Fatalf("findings %+v", found)
	}
	// Laid out like containerd's but without its metadata: not verifiable.
	if f := got[0]; f.Severity != finding.Warning || f.Details["verification"] != "unverified" || f.Details["snapshot_id"] != "3" ||
		!strings.Contains(f.Details["unverified_reason"], "metadata.db") {
		t.Errorf("verification: %s %v", f.Severity, f.Details)
	}

	// An absolute chain beside it, and the wrong snapshotter root.
	other := t.TempDir()
	testenv.Tmpfs(t, other)
	layers(t, other, map[string][]string{"A": {"func/min"}, "B": {"func/max"}, "C": {"func/"}},
		map[string]string{"B/func": "y", "C/func": "y"})
	overlay(t, other+"/merged", "lowerdir="+other+"/C:"+other+"/B:"+other+"/A")
	found, err = runOne(&OpaquePropagationCheck{SnapshotRoot: dir + "/wrong"}, liveSnapshot(t, mounts.Host{}))
	if err == nil || !strings.Contains(err.Error(), rootfs) || !strings.Contains(err.Error(), dir+"/wrong/3/fs") {
		t.Errorf("error %v, want one naming %s and the missing layer", err, rootfs)
	}
	if len(findingsAt(found, OpaquePropagation, other+"/merged")) != 1 {
		t.Errorf("the other overlay's finding was lost: %+v", found)
	}
	if _, err := os.Stat(rootfs + "/func"); err != nil {
		t.Fatal(err)
	}
}

// A layer walk under a small budget: findings appear once the pass reaches
// them and persist across the runs of later passes.
func TestOpaqueBudgetedPasses(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	c, b, a := propagationChain(t, dir, false, true)
	makeTree(t, c+"/big", 5, 10, 100) // 5,055 entries before nothing, after "big" < "func"
	overlay(t, dir+"/merged", "lowerdir="+c+":"+b+":"+a)
	s := liveSnapshot(t, mounts.Host{})
	check := &OpaquePropagationCheck{Limits: walk.ScanLimits{Budget: 1000}}
	runs := 0
	for ; runs < 50; runs++ {
		found, err := runOne(check, s)
		if err != nil {
			t.Fatal(err)
		}
		if len(findingsAt(found, OpaquePropagation, dir+"/merged")) == 1 {
			break
		}
	}
	st := check.Stats()
	if runs < 5 || st.BudgetExhausted < 5 {
		t.Errorf("found after %d runs with stats %+v: the budget was not applied", runs, st)
	}
	for i := 0; i < 10; i++ {
		found, _ := runOne(check, s)
		if len(findingsAt(found, OpaquePropagation, dir+"/merged")) != 1 {
			t.Fatalf("run %d of a later pass lost the finding (stats %+v)", i, check.Stats())
		}
	}
	if st := check.Stats(); st.Passes < 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestOpaqueNodeIsAContainer: a node whose root is an overlay mounted from
// outside its mount namespace (nspawn, kind, k3d: here lowerdir=/ and a
// pivot_root into the overlay, nspawn's shape). The layer paths do not exist
// in the node, or lead into the overlay itself: the overlay is left out with
// a reason, and both scanning checks succeed.
func TestOpaqueNodeIsAContainer(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "pivot_root", "util-linux")
	dir := t.TempDir()
	node := testenv.NewNode(t, fmt.Sprintf("mount -t tmpfs none %[1]s\nmkdir %[1]s/u %[1]s/w %[1]s/m\n"+
		"mount -t overlay overlay -o lowerdir=/,upperdir=%[1]s/u,workdir=%[1]s/w %[1]s/m\n"+
		"cd %[1]s/m && mkdir -p old && pivot_root . old && cd / && mount -t proc proc /proc && umount -l /old", dir))
	s := liveSnapshot(t, mounts.Host{PID: node.PID})
	var root *mounts.Mount
	for _, m := range s.Mounts {
		if m.Mountpoint == "/" {
			root = m
		}
	}
	if root == nil || !root.Overlay {
		t.Fatalf("the node's root is not an overlay: %+v", s.Mounts)
	}
	opaque := &OpaquePropagationCheck{}
	r := &Runner{Checks: []Check{opaque, &StrayOverlayXattrCheck{}}}
	for run := 0; run < 2; run++ {
		rep := r.Run(context.Background(), s)
		if rep.Status() != finding.StatusOK {
			t.Fatalf("run %d: status %s: %+v", run, rep.Status(), rep.Checks)
		}
		reason := rep.Checks[0].Reason
		for _, want := range []string{fmt.Sprintf("overlay / (mount %d) not scanned", root.ID), dir + "/u does not exist here",
			"/ leads into the overlay itself"} {
			if !strings.Contains(reason, want) {
				t.Errorf("run %d: reason %q lacks %q", run, reason, want)
			}
		}
		if strings.Count(reason, "not scanned") != 1 {
			t.Errorf("run %d: the overlay is noted more than once: %q", run, reason)
		}
	}
}
