package layout_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/layout"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

const testdata = "../mounts/testdata/"

// TestLayoutFromCapturedTables decides the layout of every real captured
// table with no flag: the table alone, as --mountinfo does.
func TestLayoutFromCapturedTables(t *testing.T) {
	for _, tc := range []struct {
		file                          string
		kubelet, kubeletSrc           string
		containerd, containerdSrc     string
		snapshots                     string
		kubeletCandidates, evidenceIn string
	}{
		{file: "layout-f1-data-kubernetes.mountinfo", kubelet: "/data/kubernetes/kubelet", kubeletSrc: "mount table",
			containerd: "/var/lib/containerd", containerdSrc: "default",
			snapshots: "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots", evidenceIn: "3 kubelet mounts"},
		{file: "layout-nvme.mountinfo", kubelet: "/data/nvme0n1/kubelet", kubeletSrc: "mount table",
			containerd: "/data/nvme0n1/containerd", containerdSrc: "mount table",
			snapshots: "/data/nvme0n1/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"},
		{file: "layout-k3s.mountinfo", kubelet: "/var/lib/kubelet", kubeletSrc: "mount table",
			containerd: "/var/lib/rancher/k3s/agent/containerd", containerdSrc: "mount table",
			snapshots: "/var/lib/rancher/k3s/agent/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"},
		{file: "layout-two-roots.mountinfo", kubelet: "/var/lib/kubelet", kubeletSrc: "default",
			containerd: "/var/lib/containerd", containerdSrc: "default",
			snapshots:         "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots",
			kubeletCandidates: "/data/kubelet,/var/lib/kubelet", evidenceIn: "2 candidates in the mount table, kept the default"},
		{file: "layout-two-kubelets.mountinfo", kubelet: "/var/lib/kubelet", kubeletSrc: "default",
			containerd: "/var/lib/containerd", containerdSrc: "default",
			snapshots:         "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots",
			kubeletCandidates: "/data/kubernetes/kubelet,/var/lib/k0s/kubelet", evidenceIn: "2 candidates in the mount table, kept the default"},
		{file: "k8s-node-brief.mountinfo", kubelet: "/var/lib/kubelet", kubeletSrc: "mount table",
			containerd: "/var/lib/containerd", containerdSrc: "mount table",
			snapshots: "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"},
		{file: "capture-bindfs-deleted.mountinfo", kubelet: "/w/var/lib/kubelet", kubeletSrc: "mount table",
			containerd: "/var/lib/containerd", containerdSrc: "default",
			snapshots: "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"},
		{file: "capture-overlay.mountinfo", kubelet: "/var/lib/kubelet", kubeletSrc: "default",
			containerd: "/w/var/lib/containerd", containerdSrc: "mount table",
			snapshots: "/w/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"},
		{file: "host-vm-6.18.mountinfo", kubelet: "/var/lib/kubelet", kubeletSrc: "default",
			containerd: "/var/lib/containerd", containerdSrc: "default",
			snapshots: "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots", evidenceIn: "no kubelet mounts in the mount table"},
		{file: "nspawn-systemd-252.mountinfo", kubelet: "/var/lib/kubelet", kubeletSrc: "default",
			containerd: "/var/lib/containerd", containerdSrc: "default",
			snapshots: "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			s, err := mounts.ReadCapturedTable(testdata+tc.file, mounts.Host{})
			if err != nil {
				t.Fatal(err)
			}
			l := s.Layout
			if l.Kubelet.Path != tc.kubelet || string(l.Kubelet.Source) != tc.kubeletSrc {
				t.Errorf("kubelet root = %v, want %s from %s", l.Kubelet, tc.kubelet, tc.kubeletSrc)
			}
			if l.ContainerdRoot.Path != tc.containerd || string(l.ContainerdRoot.Source) != tc.containerdSrc {
				t.Errorf("containerd root = %v, want %s from %s", l.ContainerdRoot, tc.containerd, tc.containerdSrc)
			}
			if l.ContainerdSnapshots.Path != tc.snapshots {
				t.Errorf("snapshots = %v, want %s", l.ContainerdSnapshots, tc.snapshots)
			}
			if got := strings.Join(sorted(l.Kubelet.Candidates), ","); got != tc.kubeletCandidates {
				t.Errorf("kubelet candidates = %q, want %q", got, tc.kubeletCandidates)
			}
			if !strings.Contains(l.Kubelet.Evidence, tc.evidenceIn) {
				t.Errorf("kubelet evidence %q does not say %q", l.Kubelet.Evidence, tc.evidenceIn)
			}
			if s.Host.KubeletRoot != l.Kubelet.Path || s.Host.ContainerdSnapshots != l.ContainerdSnapshots.Path {
				t.Errorf("snapshot's host %+v does not use the layout %+v", s.Host, l)
			}
		})
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// TestFoundRootClassifiesTheSeed: the F1 seed's pod volume under
// /data/kubernetes/kubelet is a pod volume of pod 92f2591b-... without
// --path.kubelet, which the default root alone never made it.
func TestFoundRootClassifiesTheSeed(t *testing.T) {
	s, err := mounts.ReadCapturedTable(testdata+"layout-f1-data-kubernetes.mountinfo", mounts.Host{})
	if err != nil {
		t.Fatal(err)
	}
	var vol, stage *mounts.Mount
	for _, m := range s.Mounts {
		if m.Kube != nil && m.Kube.Kind == mounts.PodVolume && m.Kube.VolumePlugin == mounts.CsiPlugin {
			vol = m
		}
		if m.Kube != nil && m.Kube.Kind == mounts.CSIStaging {
			stage = m
		}
	}
	if vol == nil || vol.Kube.PodUID != "92f2591b-66b5-4843-b7a7-42d0acd2be07" || vol.Kube.Volume != "dashboard-folder" {
		t.Fatalf("pod volume not classified: %+v", vol)
	}
	if vol.Kube.CSIDriver != "cephfs.csi.ceph.com" {
		t.Errorf("the pod volume's CSI driver is not named after the staging mount of its connection: %+v", vol.Kube)
	}
	if stage == nil || stage.Kube.CSIDriver != "cephfs.csi.ceph.com" {
		t.Fatalf("staging mount not classified: %+v", stage)
	}
	// With the default root given as a flag, it is not a kubelet mount.
	s, err = mounts.ReadCapturedTable(testdata+"layout-f1-data-kubernetes.mountinfo", mounts.Host{KubeletRoot: "/var/lib/kubelet"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Layout.Kubelet.Source != layout.FromFlag || s.Layout.Kubelet.Path != "/var/lib/kubelet" {
		t.Fatalf("a flag given must win: %v", s.Layout.Kubelet)
	}
	for _, m := range s.Mounts {
		if m.Kube != nil {
			t.Fatalf("%s classified under a root it is not under: %+v", m.Mountpoint, m.Kube)
		}
	}
}

func TestDecide(t *testing.T) {
	ev := layout.TableEvidence{Kubelet: map[string]int{"/a/kubelet": 3, "/b/kubelet": 1}, Containerd: map[string]int{}, Snapshots: map[string]int{}}
	// The running kubelet's --root-dir decides between two candidates.
	proc := layout.ProcessEvidence{KubeletRoot: layout.Found{Path: "/b/kubelet", Source: layout.FromProcess, Evidence: "kubelet pid 7 --root-dir"},
		ContainerdRoot: layout.Found{Path: "/data/containerd", Source: layout.FromConfig, Evidence: "containerd pid 9, root in /etc/containerd/config.toml"}}
	l := layout.Decide(layout.Given{}, ev, proc)
	if l.Kubelet.Path != "/b/kubelet" || l.Kubelet.Source != layout.FromProcess || len(l.Kubelet.Candidates) != 2 {
		t.Errorf("kubelet = %+v", l.Kubelet)
	}
	// The other root's mounts are still read as kubelet's (a root that
	// moved while old mounts remain).
	if !slices.Equal(l.KubeletRoots, []string{"/b/kubelet", "/a/kubelet"}) {
		t.Errorf("kubelet roots = %q", l.KubeletRoots)
	}
	if l.ContainerdRoot.Path != "/data/containerd" || l.ContainerdSnapshots.Path != "/data/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots" ||
		l.ContainerdSnapshots.Source != layout.FromDerived {
		t.Errorf("containerd = %+v %+v", l.ContainerdRoot, l.ContainerdSnapshots)
	}
	// Flags win over everything.
	l = layout.Decide(layout.Given{KubeletRoot: "/k/", ContainerdRoot: "/c", ContainerdSnapshots: "/s"}, ev, proc)
	if l.Kubelet.Path != "/k" || l.Kubelet.Source != layout.FromFlag || l.ContainerdRoot.Source != layout.FromFlag ||
		l.ContainerdSnapshots.Path != "/s" || l.ContainerdSnapshots.Source != layout.FromFlag {
		t.Errorf("flags did not win: %+v", l)
	}
	if !slices.Equal(l.KubeletRoots, []string{"/k"}) {
		t.Errorf("a flag given is the only kubelet root: %q", l.KubeletRoots)
	}
	// Only the root given: the snapshots directory is under it, whatever the table shows.
	ev.Snapshots["/x/snapshots"] = 2
	l = layout.Decide(layout.Given{ContainerdRoot: "/c"}, ev, layout.ProcessEvidence{})
	if l.ContainerdSnapshots.Path != "/c/io.containerd.snapshotter.v1.overlayfs/snapshots" {
		t.Errorf("snapshots = %+v", l.ContainerdSnapshots)
	}
	// A snapshotter root_path outside containerd's root: the table's
	// snapshots directory, containerd's root the default.
	l = layout.Decide(layout.Given{}, ev, layout.ProcessEvidence{})
	if l.ContainerdSnapshots.Path != "/x/snapshots" || l.ContainerdSnapshots.Source != layout.FromTable || l.ContainerdRoot.Source != layout.FromDefault {
		t.Errorf("snapshots = %+v, root %+v", l.ContainerdSnapshots, l.ContainerdRoot)
	}
}

func TestKubeletRootOf(t *testing.T) {
	for p, want := range map[string]string{
		"/data/kubernetes/kubelet/pods/92f2591b-66b5-4843-b7a7-42d0acd2be07/volumes/kubernetes.io~csi/dashboard-folder/mount": "/data/kubernetes/kubelet",
		"/var/lib/kubelet/pods/92f2591b-66b5-4843-b7a7-42d0acd2be07/volumes/kubernetes.io~empty-dir/cache":                    "/var/lib/kubelet",
		"/k/pods/0123456789abcdef0123456789abcdef/volume-subpaths/v/c/0":                                                      "/k", // a static pod's hash
		"/data/nvme0n1/kubelet/plugins/kubernetes.io/csi/ebs.csi.aws.com/5c1f/globalmount":                                    "/data/nvme0n1/kubelet",
		"/var/lib/kubelet/pods/not-a-uid/volumes/p/v":                                                                         "",
		"/var/lib/kubelet/pods/92f2591b-66b5-4843-b7a7-42d0acd2be07/volumes/kubernetes.io~csi/v/mount/deeper":                 "",
		"/pods/92f2591b-66b5-4843-b7a7-42d0acd2be07/volumes/p/v":                                                              "",
		"relative/pods/92f2591b-66b5-4843-b7a7-42d0acd2be07/volumes/p/v":                                                      "",
	} {
		got, _ := layout.KubeletRootOf(p)
		if got != want {
			t.Errorf("KubeletRootOf(%q) = %q, want %q", p, got, want)
		}
	}
	for p, want := range map[string]string{
		"/var/lib/rancher/k3s/agent/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/8/fs": "/var/lib/rancher/k3s/agent/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots",
		"/s/snapshots/12/work": "/s/snapshots",
		"/s/snapshots/x/fs":    "",
		"/s/other/12/fs":       "",
		"3/fs":                 "",
	} {
		got, _ := layout.SnapshotsDirOf(p)
		if got != want {
			t.Errorf("SnapshotsDirOf(%q) = %q, want %q", p, got, want)
		}
	}
}

func TestParsers(t *testing.T) {
	comm, state, ok := layout.ParseStat([]byte("812 (kube) let) S 1 812 812 0 -1"))
	if !ok || comm != "kube) let" || state != 'S' {
		t.Errorf("ParseStat = %q %c %v", comm, state, ok)
	}
	if _, _, ok := layout.ParseStat([]byte("812 (kubelet")); ok {
		t.Error("ParseStat accepted a cut line")
	}
	args := []string{"/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml", "--root-dir", "/data/a", "--root-dir=/data/kubernetes/kubelet"}
	if v, ok := layout.FlagValue(args, "--root-dir"); !ok || v != "/data/kubernetes/kubelet" {
		t.Errorf("FlagValue = %q %v", v, ok)
	}
	if _, ok := layout.FlagValue([]string{"containerd", "--root-dir=/x"}, "--root"); ok {
		t.Error("--root matched --root-dir")
	}
	for cfg, want := range map[string]string{
		"version = 2\nroot = \"/data/containerd\"\nstate = \"/run/containerd\"\n[plugins]\n": "/data/containerd",
		"# root = \"/no\"\nroot='/single'\n":                                                 "/single",
		"version = 2\n[plugins.x]\nroot = \"/in/a/table\"\n":                                 "",
	} {
		got, _ := layout.ContainerdConfigRoot([]byte(cfg))
		if got != want {
			t.Errorf("ContainerdConfigRoot(%q) = %q, want %q", cfg, got, want)
		}
	}
}

// TestProcsFakeProcfs reads a procfs laid out as the kernel does: a
// kubelet with --root-dir, one in state D (not read), and a containerd
// whose root is in its config file.
func TestProcsFakeProcfs(t *testing.T) {
	proc, root := t.TempDir(), t.TempDir()
	write := func(p, data string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(proc+"/100/stat", "100 (kubelet) S 1 100 100 0 -1 4194560")
	write(proc+"/100/cmdline", "/usr/bin/kubelet\x00--root-dir=/data/kubernetes/kubelet\x00--config\x00/etc/kubernetes/kubelet.yaml\x00--v=2\x00")
	write(root+"/etc/kubernetes/kubelet.yaml", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\npodLogsDir: /data/kubernetes/pod-logs\n")
	write(proc+"/200/stat", "200 (kubelet) D 1 200 200 0 -1 4194560")
	write(proc+"/200/cmdline", "/usr/bin/kubelet\x00--root-dir=/never/read\x00")
	write(proc+"/300/stat", "300 (containerd) S 1 300 300 0 -1 4194560")
	write(proc+"/300/cmdline", "/usr/bin/containerd\x00--config\x00/etc/containerd/config.toml\x00")
	write(root+"/etc/containerd/config.toml", "version = 2\nroot = \"/data/nvme0n1/containerd\"\n")
	write(proc+"/400/stat", "400 (sleep) S 1 400 400 0 -1 4194560")
	p := layout.Procs{Procfs: proc, Path: func(s string) string { return root + s }}
	ev := p.Read()
	if ev.KubeletRoot.Path != "/data/kubernetes/kubelet" || ev.KubeletRoot.Evidence != "kubelet pid 100 --root-dir" {
		t.Errorf("kubelet = %+v (notes %q)", ev.KubeletRoot, ev.Notes)
	}
	if ev.ContainerdRoot.Path != "/data/nvme0n1/containerd" || ev.ContainerdRoot.Source != layout.FromConfig {
		t.Errorf("containerd = %+v (notes %q)", ev.ContainerdRoot, ev.Notes)
	}
	// The seed's kubelet sets podLogsDir in its config file: it names pods.
	if ev.PodLogs.Path != "/data/kubernetes/pod-logs" || ev.PodLogs.Source != layout.FromConfig {
		t.Errorf("pod logs = %+v (notes %q)", ev.PodLogs, ev.Notes)
	}
	if l := layout.Decide(layout.Given{}, layout.TableEvidence{}, ev); l.PodLogs.Path != "/data/kubernetes/pod-logs" {
		t.Errorf("decided pod logs = %+v", l.PodLogs)
	}
	if l := layout.Decide(layout.Given{PodLogs: "/flag/pods"}, layout.TableEvidence{}, ev); l.PodLogs.Path != "/flag/pods" || l.PodLogs.Source != layout.FromFlag {
		t.Errorf("a given --path.pod-logs does not win: %+v", l.PodLogs)
	}
	if l := layout.Decide(layout.Given{}, layout.TableEvidence{}, layout.ProcessEvidence{}); l.PodLogs.Path != "/var/log/pods" || l.PodLogs.Source != layout.FromDefault {
		t.Errorf("no kubelet config: %+v, want the default", l.PodLogs)
	}
	if !slices.ContainsFunc(ev.Notes, func(n string) bool { return strings.Contains(n, "kubelet pid 200 is in state D") }) {
		t.Errorf("notes %q do not say the kubelet in D was left alone", ev.Notes)
	}
	// A config file behind a mount that may hang is not read.
	p.MayHang = func(string) bool { return true }
	if ev := p.Read(); ev.ContainerdRoot.Path != "" || ev.PodLogs.Path != "" {
		t.Errorf("config read behind a hanging mount: %+v, %+v", ev.ContainerdRoot, ev.PodLogs)
	}
}

// TestProcsRealProcess finds a real process whose comm is kubelet (a shell
// script of that name, as the kernel names a script by its file) in this
// machine's /proc and reads its --root-dir.
func TestProcsRealProcess(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "kubelet")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nread -r _\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(script, "--root-dir=/data/kubernetes/kubelet")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	ev := layout.Procs{Procfs: "/proc", Path: func(s string) string { return s }}.Read()
	if ev.KubeletRoot.Path != "/data/kubernetes/kubelet" || ev.KubeletRoot.Source != layout.FromProcess {
		t.Fatalf("kubelet root = %+v, notes %q", ev.KubeletRoot, ev.Notes)
	}
}
