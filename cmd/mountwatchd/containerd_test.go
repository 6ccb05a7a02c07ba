package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// findingMap is a finding of the JSON report as a script reads it.
type findingMap struct {
	Check, Severity, Mountpoint, Path, Message string
	Details                                    map[string]string
}

func findingsOf(t *testing.T, r result) []findingMap {
	t.Helper()
	var d struct {
		Findings []findingMap `json:"findings"`
		Checks   []struct {
			Check, Status, Error string
			Duration             float64 `json:"duration_seconds"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("--output json: %v\n%s", err, r.stdout)
	}
	for _, c := range d.Checks {
		if c.Error != "" {
			t.Errorf("check %s failed: %s", c.Check, c.Error)
		}
		if c.Check == "opaque_propagation" {
			t.Logf("opaque_propagation took %.3fs", c.Duration)
		}
	}
	return d.Findings
}

func opaqueAt(fs []findingMap, mountpoint string) []findingMap {
	var out []findingMap
	for _, f := range fs {
		if f.Check == "opaque_propagation" && f.Mountpoint == mountpoint {
			out = append(out, f)
		}
	}
	return out
}

func opaqueValue(t *testing.T, dir string) string {
	t.Helper()
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(dir, "trusted.overlay.opaque", buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// The issue-10 node: a real containerd 1.6 with runc unpacks images built
// from layer tars with its own overlayfs snapshotter, and a container of
// each image runs, so the rootfs overlays and their lowerdirs are
// containerd's own.
//
//   - legit: three consecutive layers each replace /data/modules (each tar
//     has data/modules/.wh..wh..opq, as BuildKit writes): opaque in three
//     snapshots, and no finding, exit 0;
//   - propagated: the marker set by hand on the snapshot of a layer whose tar
//     has no opaque whiteout, over a layer that has one: critical, naming
//     that layer's blob digest, its snapshot, the image and the container;
//   - gc: the legit shape with the top layer's blob removed from the content
//     store: a warning that says it could not be verified, never critical;
//   - with no readable containerd root, nothing is critical;
//   - stray_overlay_xattr does not report containerd's snapshots, even when
//     scanning containerd's root, and does report a `cp -a` copy of a
//     snapshot into a pod's emptyDir.
func TestOnceOpaqueRealContainerd(t *testing.T) {
	c := testenv.StartContainerd(t)
	base := testenv.BusyboxLayer(t, testenv.File("data/modules/base", "0"))
	replace := func(name string) string {
		return testenv.LayerTar(t, testenv.Opaque("data/modules"), testenv.File("data/modules/"+name, name))
	}
	legit := c.ImportImage("localhost/legit:1", base, replace("one"), replace("two"), replace("three"))
	legitTask := c.Run(legit.Name, "legit")
	lowers := testenv.LowerDirs(t, legitTask.Rootfs)
	if len(lowers) != 4 {
		t.Fatalf("legit rootfs lowerdirs %v", lowers)
	}
	for _, l := range lowers[:3] {
		if v := opaqueValue(t, l+"/data/modules"); v != "y" {
			t.Fatalf("containerd did not make %s/data/modules opaque (%q): the test proves nothing", l, v)
		}
	}
	if ents, _ := os.ReadDir(legitTask.Rootfs + "/data/modules"); len(ents) != 1 || ents[0].Name() != "three" {
		t.Fatalf("the legit container sees %v in /data/modules, want [three]", ents)
	}

	dir := t.TempDir()
	kubelet := dir + "/kubelet"
	if err := os.MkdirAll(kubelet+"/pods", 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--once", "--output=json", "--scan.rate=0", "--path.kubelet", kubelet, "--path.pod-logs", dir + "/logs"}

	r := mountwatchd(t, args...)
	if fs := findingsOf(t, r); r.code != 0 || len(fs) != 0 {
		t.Fatalf("a legitimately built image: exit %d, want 0, findings %+v\n%s", r.code, fs, r.stderr)
	}

	// The propagated marker: layer "more" adds a file to /data/modules
	// without replacing it; its snapshot gets the marker as the copy-up bug
	// (or a copy of overlay xattrs) gave it, so it hides "one".
	prop := c.ImportImage("localhost/propagated:1", base, replace("one"),
		testenv.LayerTar(t, testenv.File("data/modules/more", "more")))
	var propSnap string
	for _, d := range mustGlob(t, c.SnapshotsDir()+"/*/fs/data/modules/more") {
		propSnap = strings.TrimSuffix(d, "/data/modules/more")
	}
	if propSnap == "" || opaqueValue(t, propSnap+"/data/modules") != "" {
		t.Fatalf("snapshot of the layer without whiteout: %q", propSnap)
	}
	testenv.Run(t, "setfattr", "-n", "trusted.overlay.opaque", "-v", "y", propSnap+"/data/modules")
	propTask := c.Run(prop.Name, "propagated")
	if l := testenv.LowerDirs(t, propTask.Rootfs); len(l) != 3 || l[0] != propSnap {
		t.Fatalf("propagated rootfs lowerdirs %v, want %s on top", l, propSnap)
	}
	if ents, _ := os.ReadDir(propTask.Rootfs + "/data/modules"); len(ents) != 1 || ents[0].Name() != "more" {
		t.Fatalf("the propagated marker does not hide the lower layer: /data/modules has %v", ents)
	}

	// The content garbage-collected: the legit shape, its top blob gone.
	gc := c.ImportImage("localhost/gc:1", base, replace("uno"), replace("dos"))
	gcTask := c.Run(gc.Name, "gc")
	if err := os.Remove(c.BlobPath(gc.Layers[2])); err != nil {
		t.Fatal(err)
	}

	// An image pulled and not run: its snapshots are no live overlay's
	// layers, and still not stray.
	c.ImportImage("localhost/idle:1", base, replace("idle"))

	// A pod that copied a snapshot into its emptyDir (cp -a keeps xattrs).
	const uid = "0f0e0d0c-0b0a-4909-8807-060504030201"
	vol := kubelet + "/pods/" + uid + "/volumes/kubernetes.io~empty-dir/layers"
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "cp", "-a", lowers[0], vol+"/copied")

	r = mountwatchd(t, append(args, "--scan.root", c.Root)...)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1:\n%s%s", r.code, r.stdout, r.stderr)
	}
	fs := findingsOf(t, r)
	if got := opaqueAt(fs, legitTask.Rootfs); len(got) != 0 {
		t.Errorf("the legit image is reported beside the others: %+v", got)
	}

	got := opaqueAt(fs, propTask.Rootfs)
	if len(got) != 1 {
		t.Fatalf("propagated: %d findings, want 1: %+v", len(got), fs)
	}
	f := got[0]
	want := map[string]string{
		"verification": "propagated", "layer_digest": prop.Layers[2], "propagated_layer": propSnap,
		"snapshot_id": filepath.Base(filepath.Dir(propSnap)), "chain_id": prop.ChainIDs[2],
		"image": prop.Name, "container": propTask.ID, "container_namespace": "default",
		"upper_layer": propSnap, "hidden_entries": "1", "directory": "/data/modules",
	}
	for k, v := range want {
		if f.Details[k] != v {
			t.Errorf("propagated: details[%s] = %q, want %q", k, f.Details[k], v)
		}
	}
	if f.Severity != "critical" || f.Path != "/data/modules" || !strings.Contains(f.Message, prop.Layers[2]) {
		t.Errorf("propagated: %s %s: %s", f.Severity, f.Path, f.Message)
	}

	got = opaqueAt(fs, gcTask.Rootfs)
	if len(got) != 1 {
		t.Fatalf("gc: %d findings, want 1: %+v", len(got), fs)
	}
	f = got[0]
	if f.Severity != "warning" || f.Details["verification"] != "unverified" || f.Details["layer_digest"] != gc.Layers[2] ||
		!strings.Contains(f.Details["unverified_reason"], "not in containerd's content store") ||
		!strings.Contains(f.Message, "could not be verified") || f.Details["image"] != gc.Name {
		t.Errorf("gc: %s %v\n%s", f.Severity, f.Details, f.Message)
	}

	var stray []string
	for _, f := range fs {
		if f.Check == "stray_overlay_xattr" {
			stray = append(stray, f.Path)
		}
	}
	if !slices.Equal(stray, []string{vol + "/copied/data/modules"}) {
		t.Errorf("stray_overlay_xattr: %v, want only the copy in the emptyDir", stray)
	}

	// No readable containerd root: nothing can be verified, nothing is
	// critical.
	r = mountwatchd(t, append(args, "--path.containerd-root", dir+"/none", "--path.containerd-snapshots", c.SnapshotsDir())...)
	fs = findingsOf(t, r)
	if r.code != 1 || len(opaqueAt(fs, propTask.Rootfs)) != 1 || len(opaqueAt(fs, legitTask.Rootfs)) != 1 {
		t.Fatalf("no containerd root: exit %d, findings %+v", r.code, fs)
	}
	for _, f := range fs {
		if f.Check == "opaque_propagation" && (f.Severity != "warning" || !strings.Contains(f.Details["unverified_reason"], "not readable")) {
			t.Errorf("no containerd root: %s %v", f.Severity, f.Details)
		}
	}
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
