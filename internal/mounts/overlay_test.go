package mounts

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func dirs(ls []Layer) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Dir)
	}
	return out
}

func TestParseOverlayOptions(t *testing.T) {
	const snap = "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"
	for _, c := range []struct {
		name, opts    string
		layers, data  []string
		work          string
		userxattr     bool
		upper         bool
		wantErr       string
		wantErrIs     error
		snapshotRoots string
	}{
		{name: "legacy with upper", opts: "rw,lowerdir=/l/3:/l/2:/l/1,upperdir=/u,workdir=/w,uuid=on",
			layers: []string{"/u", "/l/3", "/l/2", "/l/1"}, work: "/w", upper: true},
		{name: "read-only", opts: "ro,lowerdir=/a:/b,redirect_dir=on", layers: []string{"/a", "/b"}},
		{name: "userxattr", opts: "ro,lowerdir=/a:/b,redirect_dir=nofollow,userxattr", layers: []string{"/a", "/b"}, userxattr: true},
		{name: "octal space", opts: `ro,lowerdir=/l/sp\040ace:/b`, layers: []string{"/l/sp ace", "/b"}},
		{name: "escaped colon, comma, backslash",
			opts:   `rw,lowerdir=/l/co\134:lon:/l/com\134\054ma:/l/back\134\134sl,upperdir=/l/u\134:p,workdir=/l/w\134\134k`,
			layers: []string{"/l/u:p", "/l/co:lon", "/l/com,ma", `/l/back\sl`}, work: `/l/w\k`, upper: true},
		{name: "data layers after ::", opts: `ro,lowerdir=/a:/b::/d1::/d2`, layers: []string{"/a", "/b"}, data: []string{"/d1", "/d2"}},
		{name: "new API", opts: `rw,lowerdir+=/l/co:lon,lowerdir+=/l/com\054ma,lowerdir+=/l/back\134sl,datadir+=/d,upperdir=/u,workdir=/w`,
			layers: []string{"/u", "/l/co:lon", "/l/com,ma", `/l/back\sl`}, data: []string{"/d"}, work: "/w", upper: true},
		{name: "relative containerd", opts: "ro,lowerdir=3/fs:2/fs:1/fs", layers: []string{snap + "/3/fs", snap + "/2/fs", snap + "/1/fs"}},
		{name: "relative new API", opts: "rw,lowerdir+=3/fs,datadir+=1/fs,upperdir=4/fs,workdir=4/work",
			layers: []string{snap + "/4/fs", snap + "/3/fs"}, data: []string{snap + "/1/fs"}, work: snap + "/4/work", upper: true},
		{name: "relative cleaned", opts: "ro,lowerdir=./3/fs/:2//fs", layers: []string{snap + "/3/fs", snap + "/2/fs"}},
		{name: "relative leaving the root", opts: "ro,lowerdir=../../etc:2/fs", wantErr: "leaves the snapshotter root", wantErrIs: ErrUnresolvableLayer},
		{name: "relative without a root", opts: "ro,lowerdir=3/fs", snapshotRoots: "-", wantErr: "no absolute snapshotter root", wantErrIs: ErrUnresolvableLayer},
		{name: "no lowerdir", opts: "rw,upperdir=/u,workdir=/w", wantErr: "no lowerdir", wantErrIs: ErrOverlayOptions},
		{name: "empty layer", opts: "ro,lowerdir=/a::", wantErr: "empty layer", wantErrIs: ErrOverlayOptions},
		{name: "empty first layer", opts: "ro,lowerdir=:/a", wantErr: "empty layer 1"},
		{name: "trailing backslash", opts: `ro,lowerdir=/a\134`, wantErr: "trailing backslash"},
		{name: "bad octal", opts: `ro,lowerdir=/a\09x`, wantErr: "bad octal escape"},
		{name: "short octal", opts: `ro,lowerdir=/a\04`, wantErr: "short octal escape"},
		{name: "mixed APIs", opts: "ro,lowerdir=/a,lowerdir+=/b", wantErr: "both lowerdir and lowerdir+"},
		{name: "lowerdir+ after datadir+", opts: "ro,lowerdir+=/a,datadir+=/d,lowerdir+=/b", wantErr: "after datadir+"},
		{name: "empty upperdir", opts: "rw,lowerdir=/a,upperdir=,workdir=/w", wantErr: "upperdir"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := snap
			if c.snapshotRoots == "-" {
				root = ""
			}
			ch, err := parseOverlayOptions(c.opts, root)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				if c.wantErrIs != nil && !errors.Is(err, c.wantErrIs) {
					t.Errorf("error %v is not %v", err, c.wantErrIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := dirs(ch.Layers); !reflect.DeepEqual(got, c.layers) {
				t.Errorf("layers %q, want %q", got, c.layers)
			}
			if got := dirs(ch.Data); !reflect.DeepEqual(got, c.data) {
				t.Errorf("data %q, want %q", got, c.data)
			}
			if ch.Work != c.work || ch.UserXattr != c.userxattr {
				t.Errorf("work %q userxattr %v", ch.Work, ch.UserXattr)
			}
			if (len(ch.Layers) > 0 && ch.Layers[0].Role == UpperLayer) != c.upper {
				t.Errorf("upper layer: %+v", ch.Layers)
			}
			for _, l := range ch.Layers[1:] {
				if l.Role != LowerLayer {
					t.Errorf("role of %s: %s", l.Dir, l.Role)
				}
			}
		})
	}
}

func TestContainerdTask(t *testing.T) {
	for mp, want := range map[string][2]string{
		"/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs":   {"k8s.io", "abc"},
		"/run/containerd/io.containerd.runtime.v1.linux/moby/def/rootfs":    {"moby", "def"},
		"/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs/x": {"", ""},
		"/run/containerd/io.containerd.runtime.v2.task/k8s.io/rootfs":       {"", ""},
		"/run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/x/rootfs": {"k8s.io", "x"},
		"/var/lib/docker/overlay2/abc/merged":                               {"", ""},
	} {
		ns, id := containerdTask(mp)
		if ns != want[0] || id != want[1] {
			t.Errorf("containerdTask(%q) = %q, %q; want %q", mp, ns, id, want)
		}
	}
}

// The overlay mounts capture-overlay.sh made on a 6.18 kernel parse into the
// layers that were mounted.
func TestOverlayChainsCaptured(t *testing.T) {
	s, err := ReadCapturedTable("testdata/capture-overlay.mountinfo", Host{KubeletRoot: "/w/var/lib/kubelet"})
	if err != nil {
		t.Fatal(err)
	}
	const snap = "/w/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"
	want := map[string]struct {
		layers, data []string
		work         string
		userxattr    bool
		container    string
	}{
		"/w/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc123/rootfs": {
			layers: []string{snap + "/4/fs", snap + "/3/fs", snap + "/2/fs", snap + "/1/fs"}, work: snap + "/4/work", container: "abc123"},
		"/w/run/containerd/io.containerd.runtime.v2.task/k8s.io/def456/rootfs": {
			layers: []string{snap + "/3/fs", snap + "/2/fs", snap + "/1/fs"}, container: "def456"},
		"/w/m/userx": {layers: []string{snap + "/2/fs", snap + "/1/fs"}, userxattr: true},
		"/w/m/esc":   {layers: []string{"/w/l/up", "/w/l/sp ace", "/w/l/co:lon", "/w/l/com,ma", `/w/l/back\sl`}, work: "/w/l/wk"},
		"/w/m/data":  {layers: []string{"/w/l/sp ace"}, data: []string{"/w/l/data1"}},
		"/w/m/newapi": {layers: []string{"/w/l/up", "/w/l/co:lon", "/w/l/com,ma", `/w/l/back\sl`},
			data: []string{"/w/l/data1"}, work: "/w/l/wk"},
	}
	if len(s.Mounts) != len(want) || len(s.ParseErrors) != 0 {
		t.Fatalf("%d mounts, %v", len(s.Mounts), s.ParseErrors)
	}
	for _, m := range s.Mounts {
		w, ok := want[m.Mountpoint]
		if !ok || !m.Overlay {
			t.Errorf("unexpected mount %s (%s)", m.Mountpoint, m.FSType)
			continue
		}
		ch, err := ParseOverlayChain(m, snap)
		if err != nil {
			t.Errorf("%s: %v", m.Mountpoint, err)
			continue
		}
		if got := dirs(ch.Layers); !reflect.DeepEqual(got, w.layers) {
			t.Errorf("%s: layers %q, want %q", m.Mountpoint, got, w.layers)
		}
		if got := dirs(ch.Data); !reflect.DeepEqual(got, w.data) {
			t.Errorf("%s: data %q, want %q", m.Mountpoint, got, w.data)
		}
		if ch.Work != w.work || ch.UserXattr != w.userxattr || ch.Container != w.container {
			t.Errorf("%s: work %q userxattr %v container %q", m.Mountpoint, ch.Work, ch.UserXattr, ch.Container)
		}
		if w.container != "" && ch.ContainerNamespace != "k8s.io" {
			t.Errorf("%s: namespace %q", m.Mountpoint, ch.ContainerNamespace)
		}
	}
	// The relative chain cannot be placed without a snapshotter root, and
	// the error names the mount.
	for _, m := range s.Mounts {
		if strings.Contains(m.Mountpoint, "def456") {
			_, err := ParseOverlayChain(m, "")
			if err == nil || !strings.Contains(err.Error(), m.Mountpoint) || !errors.Is(err, ErrUnresolvableLayer) {
				t.Errorf("relative chain without a root: %v", err)
			}
		}
	}
}

// The scanning checks of one run share the chains: parsed once per
// snapshot and snapshot root, not once per check.
func TestOverlayChainsParsedOnce(t *testing.T) {
	s, err := ReadCapturedTable("testdata/capture-overlay.mountinfo", Host{KubeletRoot: DefaultKubeletRoot})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.OverlayChains(DefaultContainerdSnapshots)
	b, _ := s.OverlayChains(DefaultContainerdSnapshots)
	if len(a) == 0 || len(a) != len(b) || a[0] != b[0] {
		t.Fatalf("chains parsed again: %d then %d chains, same first: %v", len(a), len(b), len(a) > 0 && len(b) > 0 && a[0] == b[0])
	}
	if c, _ := s.OverlayChains("/elsewhere"); len(c) > 0 && c[0] == a[0] {
		t.Error("a different snapshot root shared the chains resolved against another")
	}
}

// The filesystem-type policy agrees with itself: every type that may hang
// is probed by default, and none of them is one a scan walks into (issue 9:
// the lists written five times had drifted).
func TestFSTypeSetsAgree(t *testing.T) {
	probed := DefaultProbedFSTypes()
	for _, fstype := range append(slices.Clone(remoteFSTypes), "fuse", "fuse.ceph-fuse", "fuse.sshfs", "fuseblk") {
		m := &Mount{}
		m.FSType = fstype
		classify(m)
		if !m.MayHang() {
			t.Errorf("%s: not MayHang", fstype)
		}
		if !MatchFSType(probed, fstype) {
			t.Errorf("%s may hang but is not probed by default", fstype)
		}
		if m.Local() {
			t.Errorf("%s may hang but a scan would walk into it", fstype)
		}
	}
	for fstype := range localFSTypes {
		m := &Mount{}
		m.FSType = fstype
		classify(m)
		if m.MayHang() || MatchFSType(probed, fstype) || m.Pseudo() {
			t.Errorf("local %s: may hang %v, probed %v, pseudo %v", fstype, m.MayHang(), MatchFSType(probed, fstype), m.Pseudo())
		}
	}
}
