package mounts

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for every parser of outside input in this package: the mount
// table (the kernel's, or a file from a support bundle), overlay mount
// options, kubelet paths, vol_data.json and pod log directory names (which
// pods can influence). Seeds are the real captures in testdata/ plus
// testdata/fuzz/<target>; `make fuzz` runs each for a bounded time.

func FuzzParseMountTable(f *testing.F) {
	captures, _ := filepath.Glob("testdata/*.mountinfo")
	for _, c := range captures {
		if data, err := os.ReadFile(c); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("22 1 259:1 / / rw - ext4 /dev/vda rw\n23 22 0:39 garbage\n\r\n\x00\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		mounts, perrs, n, err := ParseMountTableLimit(bytes.NewReader(data), 1<<20)
		if len(perrs) > MaxParseErrorsListed || n < len(perrs) {
			t.Fatalf("%d listed of %d parse errors", len(perrs), n)
		}
		if err != nil {
			return
		}
		s := IndexSnapshot(&Snapshot{Mounts: mounts, ParseErrors: perrs})
		for _, m := range mounts {
			if !strings.HasPrefix(m.Mountpoint, "/") {
				t.Fatalf("mount point %q is not absolute", m.Mountpoint)
			}
			_ = s.Reachable(m)
			_, _ = ParseOverlayChain(m, DefaultContainerdSnapshots)
			_ = ParseKubePath(DefaultKubeletRoot, m.Mountpoint)
		}
	})
}

func FuzzOverlayOptions(f *testing.F) {
	for _, s := range []string{
		"rw,lowerdir=/l2:/l1,upperdir=/u,workdir=/w",
		"rw,lowerdir=3/fs:2/fs:1/fs,upperdir=4/fs,workdir=4/work,userxattr",
		`rw,lowerdir=/a\:b:/c\,d::/data,upperdir=/u\\x,workdir=/w\040x`,
		"rw,lowerdir+=/l1,lowerdir+=/l2,datadir+=/d,redirect_dir=on,xino=off",
		"lowerdir=,upperdir=",
		`lowerdir=\`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, opts string) {
		c, err := parseOverlayOptions(opts, DefaultContainerdSnapshots)
		if err != nil || c == nil {
			return
		}
		for _, d := range c.Dirs() {
			if !strings.HasPrefix(d, "/") {
				t.Fatalf("layer %q of %q is not absolute", d, opts)
			}
		}
		_ = c.XattrPrefix()
	})
}

func FuzzKubePath(f *testing.F) {
	root := DefaultKubeletRoot
	for _, p := range []string{
		root + "/pods/7c3e1f0a-2b4d-4c6e-8f10-123456789abc/volumes/kubernetes.io~csi/pvc-1/mount",
		root + "/pods/u/volume-subpaths/v/c/0",
		root + "/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/0123abcd/globalmount",
		root + "/pods/u/volumes/kubernetes.io~empty-dir/cache/a/b/c",
		root + "/pods//volumes///mount", root + "/../x", "/", "",
	} {
		f.Add(root, p)
	}
	f.Fuzz(func(t *testing.T, root, p string) {
		for _, k := range []*Kube{ParseKubePath(root, p), ParseKubeFilePath(root, p)} {
			if k != nil && strings.Contains(k.PodUID, "/") {
				t.Fatalf("pod uid %q from %q under %q", k.PodUID, p, root)
			}
		}
	})
}

func FuzzVolData(f *testing.F) {
	f.Add([]byte(`{"attachmentID":"csi-123","driverName":"cephfs.csi.ceph.com","nodeName":"node-1","specVolID":"pvc-1","volumeHandle":"h1","volumeLifecycleMode":"Persistent"}`))
	f.Add([]byte(`{"driverName":1}`))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		vd, ok := parseVolData(data)
		if !ok && (vd != volData{}) {
			t.Fatalf("failed parse returned %+v", vd)
		}
	})
}

func FuzzPodLogDir(f *testing.F) {
	for _, s := range []string{"kube-system_coredns-7db6d8ff4d-abcde_7c3e1f0a-2b4d-4c6e-8f10-123456789abc", "a_b", "a__c", "_a_b", "a_b_c_d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dir string) {
		ns, name, uid, ok := parsePodLogDir(dir)
		if !ok {
			return
		}
		if ns+"_"+name+"_"+uid != dir || strings.Contains(ns+name+uid, "_") || ns == "" || name == "" || uid == "" {
			t.Fatalf("%q split into %q %q %q", dir, ns, name, uid)
		}
		_ = utf8.ValidString(dir)
	})
}
