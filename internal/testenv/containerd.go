package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Where the real containerd keeps its files. StartContainerd mounts tmpfs
// over both (in the test's private mount namespace), so layer directories
// and task rootfs mounts have the paths of a real node.
const (
	ContainerdRoot  = "/var/lib/containerd"
	ContainerdState = "/run/containerd"
)

// Containerd is a real containerd daemon (Debian's containerd 1.6 with runc)
// that a test started in its own private mount namespace: tmpfs over
// ContainerdRoot and ContainerdState, config version 2, CRI disabled, its
// socket under the state directory. It is killed by PID when the test ends,
// with every shim and container it started, and the cgroup directories runc
// made for the test's containers are removed.
//
// One Containerd at a time per test binary (the paths are fixed); do not use
// it from parallel tests.
type Containerd struct {
	// PID is the containerd daemon's.
	PID int
	// Root, State and Socket are the daemon's directories and socket.
	Root, State, Socket string
	// Namespace is the containerd namespace ctr works in ("default").
	Namespace string

	t     testing.TB
	cmd   *exec.Cmd
	log   *SyncBuffer
	tasks []string // container ids run, for clean-up
}

// RequireContainerd requires root in a private mount namespace and the
// programs StartContainerd and ImportImage use.
func RequireContainerd(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	for _, p := range [][2]string{{"containerd", "containerd"}, {"ctr", "containerd"}, {"runc", "runc"},
		{"umoci", "umoci"}, {"skopeo", "skopeo"}} {
		RequireCommand(t, p[0], p[1])
	}
	_, err := os.Stat(busyboxPath)
	Require(t, err == nil, "%s (apt package busybox-static)", busyboxPath)
}

// StartContainerd starts containerd and waits until `ctr version` answers.
// It fails the test (skips it outside CI) without root, a private mount
// namespace, containerd, runc, umoci or skopeo.
func StartContainerd(t testing.TB) *Containerd {
	t.Helper()
	RequireContainerd(t)
	c := &Containerd{Root: ContainerdRoot, State: ContainerdState, Namespace: "default", t: t, log: &SyncBuffer{}}
	c.Socket = filepath.Join(c.State, "containerd.sock")
	Tmpfs(t, c.Root)
	Tmpfs(t, c.State)
	cfg := filepath.Join(c.State, "config.toml")
	conf := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\n[grpc]\n  address = %q\n",
		c.Root, c.State, c.Socket)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command("containerd", "--config", cfg)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("containerd: %v", err)
	}
	c.PID = c.cmd.Process.Pid
	t.Cleanup(c.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := c.CtrErr("version"); err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer `ctr version` within 20s; its log:\n%s", c.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log is what containerd wrote to stdout and stderr so far.
func (c *Containerd) Log() string { return c.log.String() }

// CtrErr runs `ctr --address SOCKET -n NAMESPACE args...` and returns its
// combined output.
func (c *Containerd) CtrErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	all := append([]string{"--address", c.Socket, "-n", c.Namespace}, args...)
	out, err := exec.CommandContext(ctx, "ctr", all...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Ctr runs ctr like CtrErr and fails the test if it fails.
func (c *Containerd) Ctr(args ...string) string {
	c.t.Helper()
	out, err := c.CtrErr(args...)
	if err != nil {
		c.t.Fatalf("%v\ncontainerd log:\n%s", err, c.log.String())
	}
	return out
}

// SnapshotsDir is the overlayfs snapshotter's snapshots directory: layer N
// is SnapshotsDir()/N/fs.
func (c *Containerd) SnapshotsDir() string {
	return filepath.Join(c.Root, "io.containerd.snapshotter.v1.overlayfs", "snapshots")
}

// BlobPath is where the content store keeps the blob with digest
// "sha256:<hex>".
func (c *Containerd) BlobPath(digest string) string {
	alg, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(c.Root, "io.containerd.content.v1.content", "blobs", alg, hex)
}

// Image is an image imported into containerd by ImportImage.
type Image struct {
	// Name is the image reference, as `ctr image ls` shows it.
	Name string
	// Manifest and Config are the digests ("sha256:<hex>") of its manifest
	// and config in the content store.
	Manifest, Config string
	// Layers are the layer blobs' digests and DiffIDs their uncompressed
	// digests, bottom layer first, as in the manifest and config.
	Layers, DiffIDs []string
	// ChainIDs are the layers' chain IDs, bottom first: the key of each
	// layer's committed snapshot.
	ChainIDs []string
}

// ImportImage builds an OCI image from layer tars (bottom first; see
// LayerTar and BusyboxLayer) offline with umoci, packs it into an
// oci-archive with skopeo and imports it with `ctr image import`, which
// unpacks the layers with containerd's own overlayfs snapshotter. name is a
// reference such as "localhost/legit:1". umoci gzips each layer.
func (c *Containerd) ImportImage(name string, layers ...string) Image {
	t := c.t
	t.Helper()
	dir := t.TempDir()
	layout := filepath.Join(dir, "oci")
	Run(t, "umoci", "init", "--layout", layout)
	Run(t, "umoci", "new", "--image", layout+":t")
	for _, l := range layers {
		Run(t, "umoci", "raw", "add-layer", "--image", layout+":t", l)
	}
	Run(t, "umoci", "config", "--image", layout+":t", "--config.cmd", "/bin/sleep")
	archive := filepath.Join(dir, "image.tar")
	Run(t, "skopeo", "--insecure-policy", "copy", "--quiet", "oci:"+layout+":t", "oci-archive:"+archive+":"+name)
	c.Ctr("image", "import", archive)

	img := Image{Name: name}
	for _, line := range strings.Split(c.Ctr("image", "ls"), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == name {
			img.Manifest = f[2]
		}
	}
	if img.Manifest == "" {
		t.Fatalf("image %s not listed after import:\n%s", name, c.Ctr("image", "ls"))
	}
	var m struct {
		Config struct{ Digest string }
		Layers []struct{ Digest string }
	}
	c.readJSON(img.Manifest, &m)
	var cfg struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	c.readJSON(m.Config.Digest, &cfg)
	img.Config = m.Config.Digest
	for _, l := range m.Layers {
		img.Layers = append(img.Layers, l.Digest)
	}
	img.DiffIDs = cfg.RootFS.DiffIDs
	if len(img.DiffIDs) != len(img.Layers) {
		t.Fatalf("image %s: %d layers, %d diff_ids", name, len(img.Layers), len(img.DiffIDs))
	}
	for i, d := range img.DiffIDs {
		if i == 0 {
			img.ChainIDs = append(img.ChainIDs, d)
			continue
		}
		img.ChainIDs = append(img.ChainIDs, ChainID(img.ChainIDs[i-1], d))
	}
	return img
}

// ChainID is the chain ID of a layer with this diff ID on a parent chain:
// sha256 of "parent diffID" (OCI image spec).
func ChainID(parent, diffID string) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(parent+" "+diffID)))
}

func (c *Containerd) readJSON(digest string, v any) {
	c.t.Helper()
	data, err := os.ReadFile(c.BlobPath(digest))
	if err != nil {
		c.t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		c.t.Fatalf("blob %s: %v", digest, err)
	}
}

// Task is a container started by Run.
type Task struct {
	// ID is the container id (Run adds a suffix unique to the test process:
	// runc's cgroup directories are the host's, shared with other tests).
	ID string
	// Rootfs is where containerd mounted the task's rootfs overlay.
	Rootfs string
}

// Run runs `ctr run -d IMAGE ID args...` (default args: /bin/sleep 300) and
// waits until the task's rootfs overlay is mounted. The task, its shim and
// its cgroup directories go when the test ends.
func (c *Containerd) Run(image, name string, args ...string) Task {
	c.t.Helper()
	if len(args) == 0 {
		args = []string{"/bin/sleep", "300"}
	}
	id := fmt.Sprintf("%s-%d", name, os.Getpid())
	c.tasks = append(c.tasks, id)
	c.Ctr(append([]string{"run", "-d", image, id}, args...)...)
	task := Task{ID: id, Rootfs: filepath.Join(c.State, "io.containerd.runtime.v2.task", c.Namespace, id, "rootfs")}
	WaitMounted(c.t, task.Rootfs)
	return task
}

// LowerDirs are the lowerdirs of the overlay mounted at rootfs, as the
// kernel prints them (top layer first): for a task of an image with n
// layers, lowerdir n-1-i is the snapshot directory of layer i.
func LowerDirs(t testing.TB, rootfs string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || f[4] != rootfs {
			continue
		}
		for _, opt := range strings.Split(f[len(f)-1], ",") {
			if v, ok := strings.CutPrefix(opt, "lowerdir="); ok {
				return strings.Split(v, ":")
			}
		}
	}
	t.Fatalf("no overlay with lowerdirs mounted at %s", rootfs)
	return nil
}

// stop kills every task and shim of this containerd and the daemon itself,
// by PID, and removes the cgroup directories of the test's containers.
func (c *Containerd) stop() {
	for _, id := range c.tasks {
		_, _ = c.CtrErr("task", "kill", "-s", "KILL", id)
	}
	// Shims are re-parented to PID 1; they live in our mount namespace
	// (containers in their own), so find them there, and their children.
	self, _ := os.Readlink("/proc/self/ns/mnt")
	var victims []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || pid == c.PID {
			continue
		}
		ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		// Other tests' shims have the same socket path but live in
		// their own mount namespaces.
		if ns == self && bytes.Contains(bytes.SplitN(cmdline, []byte{0}, 2)[0], []byte("containerd-shim")) {
			victims = append(victims, pid)
			victims = append(victims, children(pid)...)
		}
	}
	for _, pid := range victims {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	for _, id := range c.tasks {
		removeCgroups(id, c.Namespace)
	}
}

func children(pid int) []int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
			out = append(out, children(n)...)
		}
	}
	return out
}

// removeCgroups removes the cgroup directories runc made for container id
// of containerd namespace ns (cgroupsPath /<ns>/<id>, in every v1 hierarchy
// and in cgroup v2), and the namespace's directory when it is left empty.
// The host's cgroup tree is not isolated by a mount namespace.
func removeCgroups(id, ns string) {
	var dirs []string
	for _, pattern := range []string{"/sys/fs/cgroup/*/" + ns + "/" + id, "/sys/fs/cgroup/" + ns + "/" + id} {
		m, _ := filepath.Glob(pattern)
		dirs = append(dirs, m...)
	}
	for _, d := range dirs {
		// Busy until the killed processes are reaped.
		for i := 0; i < 100; i++ {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) || !errors.Is(err, syscall.EBUSY) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = syscall.Rmdir(filepath.Dir(d)) // only if empty: others may share it
	}
}

const busyboxPath = "/bin/busybox"

// LayerEntry is one entry of a layer tar: a directory when Name ends in
// "/", a symlink when Link is set, else a regular file with Data. A
// ".wh..wh..opq" file marks its directory opaque, ".wh.NAME" removes NAME
// from the layers below.
type LayerEntry struct {
	Name, Data, Link string
}

// Dir is a layer entry for directory name.
func Dir(name string) LayerEntry { return LayerEntry{Name: strings.TrimSuffix(name, "/") + "/"} }

// File is a layer entry for file name holding data.
func File(name, data string) LayerEntry { return LayerEntry{Name: name, Data: data} }

// Opaque is the opaque whiteout of dir (dir/.wh..wh..opq).
func Opaque(dir string) LayerEntry { return LayerEntry{Name: filepath.Join(dir, ".wh..wh..opq")} }

// Whiteout is the whiteout that deletes name (.wh.<base>).
func Whiteout(name string) LayerEntry {
	return LayerEntry{Name: filepath.Join(filepath.Dir(name), ".wh."+filepath.Base(name))}
}

// LayerTar writes an uncompressed layer tar of the entries in a temporary
// directory and returns its path. Parent directories are added as needed.
func LayerTar(t testing.TB, entries ...LayerEntry) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "layer.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	mtime := time.Unix(1_700_000_000, 0)
	seen := map[string]bool{}
	var dir func(string)
	dir = func(d string) {
		if d == "." || d == "/" || seen[d] {
			return
		}
		dir(filepath.Dir(d))
		seen[d] = true
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mtime}); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name, "/")
		dir(filepath.Dir(name))
		var err error
		switch {
		case strings.HasSuffix(e.Name, "/"):
			dir(name)
		case e.Link != "":
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: e.Link, Mode: 0o777, ModTime: mtime})
		default:
			if err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(e.Data)), ModTime: mtime}); err == nil {
				_, err = tw.Write([]byte(e.Data))
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// BusyboxLayer is a base layer with the static busybox (apt package
// busybox-static) as /bin/busybox, /bin/sh and /bin/sleep, plus extra
// entries: enough for `ctr run IMAGE ID /bin/sleep 300`.
func BusyboxLayer(t testing.TB, extra ...LayerEntry) string {
	t.Helper()
	bb, err := os.ReadFile(busyboxPath)
	Require(t, err == nil, "%s (apt package busybox-static): %v", busyboxPath, err)
	entries := []LayerEntry{{Name: "bin/busybox", Data: string(bb)},
		{Name: "bin/sh", Link: "busybox"}, {Name: "bin/sleep", Link: "busybox"}}
	return LayerTar(t, append(entries, extra...)...)
}
