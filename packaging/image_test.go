package packaging

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

const imageRef = "ghcr.io/mountwatchd/mountwatchd:" + testVersion

// buildImage runs `make image` into a fresh directory and returns the OCI
// archive.
func buildImage(t *testing.T) string {
	t.Helper()
	testenv.RequireCommand(t, "make", "make")
	dir := t.TempDir()
	archive := filepath.Join(dir, "mountwatchd-image.tar")
	start := time.Now()
	out, err := exec.Command("make", "--no-print-directory", "-C", top, "image", "IMAGE_OUT="+archive,
		"IMAGE_BUILD="+filepath.Join(dir, "build"), "VERSION="+testVersion).CombinedOutput()
	if err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	fi, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("make image: %s, %.1f MB, in %s", archive, float64(fi.Size())/1e6, time.Since(start).Round(time.Second))
	return archive
}

// ociArchive is an OCI image layout read from a tar.
type ociArchive map[string][]byte

func readArchive(t *testing.T, path string) ociArchive {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := ociArchive{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return a
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if a[h.Name], err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Annotations map[string]string `json:"annotations"`
	Platform    *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform"`
}

func (a ociArchive) blob(t *testing.T, d descriptor, v any) []byte {
	t.Helper()
	b, ok := a["blobs/"+strings.Replace(d.Digest, ":", "/", 1)]
	if !ok || len(b) != d.Size {
		t.Fatalf("blob %s: present %v, %d bytes, descriptor says %d", d.Digest, ok, len(b), d.Size)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("blob %s: %v", d.Digest, err)
		}
	}
	return b
}

type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		User         string              `json:"User"`
		Entrypoint   []string            `json:"Entrypoint"`
		ExposedPorts map[string]struct{} `json:"ExposedPorts"`
		Labels       map[string]string   `json:"Labels"`
	} `json:"config"`
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// checkArchive checks what `make image` wrote, as a registry or a runtime
// reads it: an OCI index with a linux/amd64 and a linux/arm64 image, each
// one layer with the static binary for its architecture and the license,
// run as nobody unless a pod says otherwise. It returns the amd64 config.
func checkArchive(t *testing.T, archive string) imageConfig {
	a := readArchive(t, archive)
	var layout struct{ ImageLayoutVersion string }
	if err := json.Unmarshal(a["oci-layout"], &layout); err != nil || layout.ImageLayoutVersion != "1.0.0" {
		t.Errorf("oci-layout %q: %v", a["oci-layout"], err)
	}
	var root struct{ Manifests []descriptor }
	if err := json.Unmarshal(a["index.json"], &root); err != nil || len(root.Manifests) != 1 {
		t.Fatalf("index.json: %v %s", err, a["index.json"])
	}
	if d := root.Manifests[0]; d.MediaType != "application/vnd.oci.image.index.v1+json" ||
		d.Annotations["org.opencontainers.image.ref.name"] != imageRef || d.Annotations["io.containerd.image.name"] != imageRef {
		t.Errorf("index.json names %+v, want an image index named %s", d, imageRef)
	}
	var idx struct{ Manifests []descriptor }
	a.blob(t, root.Manifests[0], &idx)
	license, err := os.ReadFile(top + "/LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	var amd64 imageConfig
	var archs []string
	for _, d := range idx.Manifests {
		if d.Platform == nil || d.Platform.OS != "linux" || d.MediaType != "application/vnd.oci.image.manifest.v1+json" {
			t.Fatalf("index entry %+v", d)
		}
		arch := d.Platform.Architecture
		archs = append(archs, arch)
		var m struct {
			Config descriptor
			Layers []descriptor
		}
		a.blob(t, d, &m)
		var cfg imageConfig
		a.blob(t, m.Config, &cfg)
		if cfg.Architecture != arch || cfg.OS != "linux" || len(m.Layers) != 1 || len(cfg.RootFS.DiffIDs) != 1 {
			t.Fatalf("%s: config %+v, %d layers", arch, cfg, len(m.Layers))
		}
		c := cfg.Config
		if c.User != "65534:65534" || !slices.Equal(c.Entrypoint, []string{"/usr/bin/mountwatchd"}) {
			t.Errorf("%s: user %q entrypoint %v", arch, c.User, c.Entrypoint)
		}
		if _, ok := c.ExposedPorts["9842/tcp"]; !ok {
			t.Errorf("%s: exposed ports %v", arch, c.ExposedPorts)
		}
		if c.Labels["org.opencontainers.image.licenses"] != "Apache-2.0" || c.Labels["org.opencontainers.image.version"] != testVersion {
			t.Errorf("%s: labels %v", arch, c.Labels)
		}
		files := layerFiles(t, a.blob(t, m.Layers[0], nil))
		if !bytes.Equal(files["usr/share/doc/mountwatchd/LICENSE"], license) {
			t.Errorf("%s: the image does not carry LICENSE", arch)
		}
		// The daemon and mountwatchd-kube, which it starts from its own
		// directory when a --kube.* switch is on.
		for _, name := range []string{"usr/bin/mountwatchd", "usr/bin/mountwatchd-kube"} {
			bin, ok := files[name]
			if !ok {
				t.Fatalf("%s: no %s in the layer", arch, name)
			}
			f, err := elf.NewFile(bytes.NewReader(bin))
			if err != nil {
				t.Fatalf("%s: %s: %v", arch, name, err)
			}
			if f.Machine != machines[arch] {
				t.Errorf("%s: %s for %v", arch, name, f.Machine)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s: %s has a program interpreter: not static", arch, name)
				}
			}
		}
		if arch == "amd64" {
			amd64 = cfg
		}
	}
	if slices.Sort(archs); !slices.Equal(archs, []string{"amd64", "arm64"}) {
		t.Errorf("platforms %v, want amd64 and arm64", archs)
	}
	return amd64
}

// layerFiles are the regular files of a gzipped layer tar, each root-owned.
func layerFiles(t *testing.T, layer []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("layer entry %s owned by %d:%d", h.Name, h.Uid, h.Gid)
		}
		if h.Typeflag == tar.TypeReg {
			if files[h.Name], err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// The image, imported into a real containerd and run the way the DaemonSet
// runs it, on a stand-in node where a FUSE mount is made after the
// container started and its server then dies: the container's daemon
// reports it in /metrics and the container's --once reports it too.
//
// How the pod is built from packaging/kubernetes/daemonset.yaml, field by
// field:
//   - hostPID: the container joins the PID namespace of the node
//     (testenv.NewInitNode: a shell that is PID 1 of its own PID and mount
//     namespaces), so the manifest's --target.pid=1 is the node's init, and
//     /proc/1/mountinfo and /proc/1/root are the node's, as on a real node.
//   - the pod's network namespace (hostNetwork: false): a sandbox process
//     holds one with only loopback up, as the pause container does; the
//     test reaches the manifest's :9842 there from a thread that entered
//     that namespace (podGet). No traffic leaves loopback.
//   - command, args and env: the manifest's, with --probe.interval and
//     --probe.timeout shortened so the test does not wait minutes.
//   - capabilities: drop ALL (every capability of ctr's default spec) and
//     add the manifest's three; the test reads the running process's
//     capability sets and uid from /proc to prove it got those and no more.
//   - runAsUser 0 and readOnlyRootFilesystem: ctr run has no --user, so the
//     container runs on a rootfs containerd's snapshotter prepared from the
//     imported image (ctr snapshots prepare, as for any container) with
//     --rootfs, whose process runs as uid 0 and is read-only; the image's
//     own user (nobody) and entrypoint are used by the init-container run
//     below, which goes through the image as usual.
//   - seccomp RuntimeDefault: containerd's default profile (--seccomp).
func TestImageUnderContainerd(t *testing.T) {
	testenv.RequireContainerd(t)
	bindfs := testenv.RequireCommand(t, "bindfs", "bindfs")
	archive := buildImage(t)
	cfg := checkArchive(t, archive)
	if t.Failed() {
		t.FailNow()
	}

	m := loadManifest(t)
	c := m.container()
	sc := c.SecurityContext
	if !m.ds.Spec.Template.Spec.HostPID || sc.RunAsUser == nil || *sc.RunAsUser != 0 ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.SeccompProfile.Type != "RuntimeDefault" ||
		!slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Fatal("the manifest changed: hostPID, runAsUser 0, readOnlyRootFilesystem, RuntimeDefault and drop ALL are what this test reproduces")
	}
	port := c.port("metrics")

	const (
		uid      = "0d8e7a52-3c1b-4f6e-9a2d-5b7c9e1f3a64"
		nodeName = "node-c"
	)
	kubelet := "/var/lib/kubelet"
	vol := kubelet + "/pods/" + uid + "/volumes/kubernetes.io~csi/pvc-logs"
	mnt := vol + "/mount"
	// The node comes first, so containerd's own mounts are not in its table.
	node := testenv.NewInitNode(t, strings.Join([]string{
		"mount -t tmpfs node-var-lib /var/lib",
		"mount -t tmpfs node-var-log /var/log",
		"mkdir -p " + mnt + " " + kubelet + "/backing /var/log/pods/obs_loki-0_" + uid,
		`printf '%s' '{"driverName":"cephfs.csi.ceph.com","specVolID":"pvc-logs","volumeHandle":"0001-csi-vol-7"}' >` + vol + "/vol_data.json",
		"echo hello >" + kubelet + "/backing/file",
	}, "\n"))
	sandbox := podSandbox(t)
	ctrd := testenv.StartContainerd(t)

	start := time.Now()
	ctrd.Ctr("image", "import", archive)
	if ls := ctrd.Ctr("image", "ls", "-q"); !slices.Contains(strings.Fields(ls), imageRef) {
		t.Fatalf("ctr image import did not name the image %s:\n%s", imageRef, ls)
	}
	t.Logf("ctr image import: %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(ctrd.Ctr("snapshots", "ls"), cfg.RootFS.DiffIDs[0]) {
		t.Fatal("the import did not unpack the amd64 layer")
	}

	// The container's rootfs, as containerd prepares one for a container of
	// the image: an active snapshot on the image's (single) layer.
	rootfs := t.TempDir()
	key := fmt.Sprintf("mountwatchd-rootfs-%d", os.Getpid())
	ctrd.Ctr("snapshots", "prepare", key, cfg.RootFS.DiffIDs[0])
	testenv.Run(t, "sh", "-c", ctrd.Ctr("snapshots", "mounts", rootfs, key))
	testenv.WaitMounted(t, rootfs)
	t.Cleanup(func() { _ = syscall.Unmount(rootfs, syscall.MNT_DETACH) })

	flags := []string{"--rootfs", "--read-only", "--seccomp",
		"--with-ns", fmt.Sprintf("pid:/proc/%d/ns/pid", node.PID),
		"--with-ns", fmt.Sprintf("network:/proc/%d/ns/net", sandbox),
		"--log-uri", "file://" + filepath.Join(t.TempDir(), "container.log")}
	for _, cp := range defaultCapabilities(t) {
		flags = append(flags, "--cap-drop", cp)
	}
	for _, cp := range sc.Capabilities.Add {
		flags = append(flags, "--cap-add", "CAP_"+cp)
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			flags = append(flags, "--env", e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName":
			flags = append(flags, "--env", e.Name+"="+nodeName)
		}
	}
	args := append(append(slices.Clone(c.Command), c.Args...), "--probe.interval=200ms", "--probe.timeout=2s")
	task := ctrd.RunWith(flags, rootfs, "mountwatchd", args...)
	pid := taskPID(t, ctrd, task.ID)
	logFile := strings.TrimPrefix(flags[slices.Index(flags, "--log-uri")+1], "file://")
	containerLog := func() string { b, _ := os.ReadFile(logFile); return string(b) }

	// What the kernel says the container's process is.
	status := procStatus(t, pid)
	const want = 1<<2 | 1<<19 | 1<<21 // CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_SYS_ADMIN
	for _, set := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if v, err := strconv.ParseUint(status[set], 16, 64); err != nil || v != want {
			t.Errorf("%s %s, want %x: the manifest's three capabilities and no more", set, status[set], want)
		}
	}
	if f := strings.Fields(status["Uid"]); len(f) == 0 || f[0] != "0" {
		t.Errorf("uid %q, want 0 (runAsUser)", status["Uid"])
	}
	if status["Seccomp"] != "2" {
		t.Errorf("seccomp mode %q, want 2 (filter: RuntimeDefault)", status["Seccomp"])
	}
	for ns, holder := range map[string]int{"pid": node.PID, "net": sandbox} {
		got, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if wantNS, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", holder, ns)); got == "" || got != wantNS {
			t.Errorf("the container's %s namespace %q is not the %s one %q", ns, got, map[string]string{"pid": "node's", "net": "pod's"}[ns], wantNS)
		}
	}
	if !rootReadOnly(t, pid) {
		t.Error("the container's root filesystem is not read-only")
	}

	get := func(path string) (string, error) {
		return podGet(sandbox, port, path)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, err := get(c.LivenessProbe.HTTPGet.Path)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container's /healthz did not answer in 30s: %v %s\ncontainer log:\n%s", err, body, containerLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	metrics := func() string {
		t.Helper()
		body, err := get("/metrics")
		if err != nil {
			t.Fatalf("/metrics: %v %s\ncontainer log:\n%s", err, body, containerLog())
		}
		return body
	}
	if body := metrics(); !strings.Contains(body, `mountwatchd_build_info{`) || !strings.Contains(body, `version="`+testVersion+`"`) {
		t.Errorf("build_info does not carry version %s", testVersion)
	}

	// After the container started, a ceph-fuse-typed FUSE mount appears on
	// the node as a CSI pod volume; then its server dies.
	node.Run(fmt.Sprintf("%s -f --no-allow-other -o subtype=ceph-fuse %s/backing %s </dev/null >/dev/null 2>&1 & echo $! >%s/bindfs.pid",
		bindfs, kubelet, mnt, kubelet))
	testenv.WaitUntil(t, 10*time.Second, "bindfs to mount in the node", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", node.PID))
		return strings.Contains(string(b), " "+mnt+" ") && strings.Contains(string(b), "fuse.ceph-fuse")
	})
	testenv.WaitUntil(t, 10*time.Second, "the new mount in the container's /metrics", func() bool {
		return strings.Contains(metrics(), `mountwatchd_mounts{fstype="fuse.ceph-fuse"} 1`)
	})
	node.Run("kill -9 $(cat " + kubelet + "/bindfs.pid)")
	series := fmt.Sprintf(`mountwatchd_problem{check="stale_mount",fstype="fuse.ceph-fuse",mountpoint=%q,pod_name="loki-0",pod_namespace="obs",pod_uid=%q,severity="critical",source=`, mnt, uid)
	testenv.WaitUntil(t, 20*time.Second, "stale_mount of the dead FUSE mount in the container's /metrics", func() bool {
		return hasSeries(metrics(), series)
	})

	// Every metric the alerting rules and the dashboard use is in the real
	// exposition of the daemon in the container.
	body := metrics()
	for _, f := range []string{"mountwatchd.rules.yml", "mountwatchd-dashboard.json"} {
		data, err := os.ReadFile(promDir + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range metricName.FindAllString(string(data), -1) {
			if strings.HasPrefix(name, "mountwatchd_kube_") {
				continue // only with a --kube.* switch: internal/e2e's TestKubeReporting checks them
			}
			if !strings.Contains(body, "\n"+name+"{") && !strings.Contains(body, "\n"+name+" ") {
				t.Errorf("%s uses %s, which the container's /metrics does not have", f, name)
			}
		}
	}

	// The container's --once, as node-problem-detector's rule runs it.
	out, err := ctrd.CtrErr("task", "exec", "--exec-id", "once", task.ID, "/usr/bin/mountwatchd", "--once", "--output", "json", "--target.pid=1", "--log.level=error")
	if code := exitCode(err); code != 1 {
		t.Errorf("--once in the container: exit %d %v (want 1)\n%s", code, err, out)
	}
	type finding struct {
		Check      string `json:"check"`
		MountPoint string `json:"mountpoint"`
		PodName    string `json:"pod_name"`
		Volume     string `json:"volume"`
	}
	var doc struct {
		Node     string    `json:"node"`
		Status   string    `json:"status"`
		Findings []finding `json:"findings"`
	}
	// ctr passes the process's stdout and stderr through: the document is
	// the JSON object in it.
	jsonOut := out[max(strings.Index(out, "{"), 0):]
	if i := strings.LastIndex(jsonOut, "}"); i >= 0 {
		jsonOut = jsonOut[:i+1]
	}
	if err := json.Unmarshal([]byte(jsonOut), &doc); err != nil || doc.Node != nodeName || doc.Status != "problems" {
		t.Fatalf("--once --output json in the container: node %q status %q %v\n%s", doc.Node, doc.Status, err, out)
	}
	t.Logf("--once in the container: exit 1, %d findings, %s", len(doc.Findings), doc.Status)
	if !slices.Contains(doc.Findings, finding{"stale_mount", mnt, "loki-0", "pvc-logs"}) {
		t.Errorf("--once in the container does not report stale_mount on %s for pod loki-0, volume pvc-logs:\n%s", mnt, out)
	}

	t.Run("npd-init-container", func(t *testing.T) { testInstallTo(t, ctrd) })
}

// testInstallTo runs the image as the node-problem-detector option's init
// container does, through the image as imported (its own user, nobody, and
// rootfs): --install-to copies the binary into a volume shared with NPD.
func testInstallTo(t *testing.T, ctrd *testenv.Containerd) {
	shared := t.TempDir()
	if err := os.Chmod(shared, 0o777); err != nil { // as an emptyDir is
		t.Fatal(err)
	}
	id := fmt.Sprintf("npd-init-%d", os.Getpid())
	ctrd.Ctr("run", "--rm", "--read-only", "--mount", "type=bind,src="+shared+",dst=/mountwatchd,options=rbind:rw",
		imageRef, id, "/usr/bin/mountwatchd", "--install-to=/mountwatchd")
	bin := filepath.Join(shared, "mountwatchd")
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != 65534 || fi.Mode().Perm() != 0o755 {
		t.Errorf("copied binary: mode %v, owner %+v; want 0755, written by the image's user 65534", fi.Mode(), fi.Sys())
	}
	if out, err := exec.Command(bin, "--version").CombinedOutput(); err != nil || !strings.Contains(string(out), "version "+testVersion) {
		t.Errorf("the copied binary's --version: %v\n%s", err, out)
	}
}

// defaultCapabilities are the capabilities of ctr's default spec: what
// capabilities.drop: [ALL] removes (ctr, unlike the CRI, has no ALL).
func defaultCapabilities(t *testing.T) []string {
	t.Helper()
	var spec struct {
		Process struct {
			Capabilities struct {
				Bounding []string `json:"bounding"`
			} `json:"capabilities"`
		} `json:"process"`
	}
	if err := json.Unmarshal([]byte(testenv.Run(t, "ctr", "oci", "spec")), &spec); err != nil {
		t.Fatal(err)
	}
	return spec.Process.Capabilities.Bounding
}

// taskPID is the PID (in the test's namespace) of a task's init process.
func taskPID(t *testing.T, ctrd *testenv.Containerd, id string) int {
	t.Helper()
	for _, l := range strings.Split(ctrd.Ctr("task", "ls"), "\n")[1:] {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == id {
			if f[2] != "RUNNING" {
				t.Fatalf("task %s is %s\n%s", id, f[2], ctrd.Log())
			}
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatalf("task %s not listed", id)
	return 0
}

func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// rootReadOnly reports whether the process's / is mounted read-only.
func rootReadOnly(t *testing.T, pid int) bool {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	ro := false
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 5 && f[4] == "/" {
			ro = slices.Contains(strings.Split(f[5], ","), "ro") // the last mount on / wins
		}
	}
	return ro
}

// podSandbox starts a process holding a network namespace of its own with
// only loopback up, as a pod's pause container does, and returns its PID.
func podSandbox(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("/bin/busybox", "sh", "-c", "/bin/busybox ip link set lo up && echo ready && exec /bin/busybox sleep 3600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make([]byte, 6)
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "ready\n" {
		t.Fatalf("pod sandbox: %q %v", line, err)
	}
	return cmd.Process.Pid
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// podGet GETs http://127.0.0.1:port/path in the network namespace of the
// process pid (the pod sandbox): the connection is made on a thread that
// entered that namespace, and the thread is thrown away afterwards. Only
// loopback is reached.
func podGet(pid, port int, path string) (string, error) {
	type dialed struct {
		conn net.Conn
		err  error
	}
	ch := make(chan dialed, 1)
	go func() {
		// Never unlocked: the thread, in the pod's namespace, exits with
		// this goroutine instead of going back to the scheduler.
		runtime.LockOSThread()
		ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			ch <- dialed{nil, err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- dialed{nil, fmt.Errorf("setns: %w", err)}
			return
		}
		// The socket is made here, on this thread, in the pod's namespace.
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		ch <- dialed{c, err}
	}()
	d := <-ch
	if d.err != nil {
		return "", d.err
	}
	defer d.conn.Close()
	_ = d.conn.SetDeadline(time.Now().Add(10 * time.Second))
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
	if err != nil {
		return "", err
	}
	req.Close = true
	if err := req.Write(d.conn); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(d.conn), req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s", resp.Status)
	}
	return string(body), err
}
