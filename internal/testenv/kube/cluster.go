package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// Options are how the node is laid out: what an operator chooses.
type Options struct {
	// RootDir is kubelet's --root-dir (default /var/lib/kubelet).
	RootDir string
	// CgroupRoot is kubelet's cgroupRoot; pods go under
	// <CgroupRoot>/kubepods (default /mwe2e-<test PID>: apart from the
	// kubepods of other tests' stand-in pods, which a kubelet would kill,
	// and from another test binary's cluster; cgroups are the host's).
	CgroupRoot string
	// PodLogsDir is podLogsDir in kubelet's config file (default
	// /var/log/pods).
	PodLogsDir string
}

// Cluster is a running one-node Kubernetes.
type Cluster struct {
	Options
	// Dir holds every file of the cluster but kubelet's root and logs.
	Dir string
	// Bin holds the binaries.
	Bin string
	// NodeName and NodeIP are the node's; the IP is on an interface of
	// the test's own network namespace.
	NodeName, NodeIP string
	// Kubeconfig is an admin's (a static token of system:masters).
	Kubeconfig string
	// Server is the API server's URL (loopback).
	Server string
	// ContainerdSocket is the CRI endpoint.
	ContainerdSocket string
	// CSIState holds the CSI plugin's FUSE servers' PID files and logs.
	CSIState string
	// CSIDriver is the suite's CSI driver's name.
	CSIDriver string

	t       testing.TB
	token   string
	procs   []*proc
	kubelet *proc
	api     *proc
	undo    []func()
}

// Node ports: fixed, since the network namespace is the test's own.
const (
	etcdPort      = 2379
	etcdPeerPort  = 2380
	apiserverPort = 6443
	nodeIP        = "10.213.0.1"
	podSubnet     = "10.213.1.0/24"
	serviceRange  = "10.213.128.0/24"
	nodeName      = "mwe2e-node"
	// CSIDriverName is the suite's CSI driver.
	CSIDriverName = "e2e.mountwatchd.test"
	// Namespace is where the test's pods go (the controller-manager makes
	// its default ServiceAccount and kube-root-ca.crt).
	Namespace = "e2e"
)

// Require fails (skips outside CI) unless the cluster can run here: root,
// private mount and network namespaces (MainNet) and Debian's packages.
func Require(t testing.TB) {
	t.Helper()
	testenv.RequireContainerd(t)
	testenv.Require(t, testenv.InNetNS(), "a private network namespace (run through testenv.MainNet as root)")
	testenv.RequireCommand(t, "etcd", "etcd-server")
	testenv.RequireCommand(t, "ip", "iproute2")
	_, err := os.Stat("/usr/lib/cni/bridge")
	testenv.Require(t, err == nil, "/usr/lib/cni/bridge (apt package containernetworking-plugins)")
}

// Start brings up a one-node cluster laid out as opts says, waits until
// the node is Ready and the CSI driver is registered, and tears it all down
// when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	Require(t)
	if opts.RootDir == "" {
		opts.RootDir = "/var/lib/kubelet"
	}
	if opts.CgroupRoot == "" {
		opts.CgroupRoot = fmt.Sprintf("/mwe2e-%d", os.Getpid())
	}
	if opts.PodLogsDir == "" {
		opts.PodLogsDir = "/var/log/pods"
	}
	c := &Cluster{Options: opts, t: t, Bin: Binaries(t), Dir: t.TempDir(), NodeName: nodeName, NodeIP: nodeIP,
		Server: fmt.Sprintf("https://127.0.0.1:%d", apiserverPort), CSIDriver: CSIDriverName}
	t.Cleanup(c.teardown)
	c.network()
	c.saveSysctls("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
	for _, d := range []string{c.RootDir, c.PodLogsDir, "/var/lib/containerd", "/run/containerd", "/var/lib/cni", "/run/netns"} {
		c.Tmpfs(d)
	}
	c.credentials()
	etcd := c.start("etcd", "--data-dir", filepath.Join(c.Dir, "etcd"), "--name", "e2e",
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeerPort),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeerPort),
		"--initial-cluster", fmt.Sprintf("e2e=http://127.0.0.1:%d", etcdPeerPort))
	api := c.apiserver()
	c.api = api
	c.waitFor(2*time.Minute, "API server ready", func() bool { return c.get("/readyz") == nil }, etcd, api)
	cm := c.start(filepath.Join(c.Bin, "kube-controller-manager"), "--kubeconfig", c.Kubeconfig,
		"--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=false",
		"--root-ca-file", filepath.Join(c.Dir, "pki", "apiserver.crt"),
		"--service-account-private-key-file", filepath.Join(c.Dir, "sa.key"))
	sched := c.start(filepath.Join(c.Bin, "kube-scheduler"), "--kubeconfig", c.Kubeconfig, "--leader-elect=false",
		"--secure-port=0")
	ctrd := c.containerd()
	c.importBusybox()
	c.kubelet = c.startKubelet()
	c.waitFor(2*time.Minute, "node Ready", func() bool {
		out, err := c.KubectlErr("get", "node", c.NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		return err == nil && out == "True"
	}, api, cm, sched, ctrd, c.kubelet)
	c.Kubectl(t, "create", "namespace", Namespace)
	c.waitFor(time.Minute, "the default ServiceAccount and kube-root-ca.crt", func() bool {
		_, e1 := c.KubectlErr("-n", Namespace, "get", "serviceaccount", "default")
		_, e2 := c.KubectlErr("-n", Namespace, "get", "configmap", "kube-root-ca.crt")
		return e1 == nil && e2 == nil
	}, cm)
	c.startCSI()
	return c
}

// network gives the node an address on an interface of the test's own
// network namespace: kubelet refuses a loopback node IP. A bridge with no
// port: these kernels may lack the dummy driver, and the CNI bridge plugin
// needs the bridge driver anyway.
func (c *Cluster) network() {
	testenv.Run(c.t, "ip", "link", "add", "mwe2e0", "type", "bridge")
	c.undo = append(c.undo, func() { _ = exec.Command("ip", "link", "del", "mwe2e0").Run() })
	testenv.Run(c.t, "ip", "addr", "add", c.NodeIP+"/24", "dev", "mwe2e0")
	testenv.Run(c.t, "ip", "link", "set", "mwe2e0", "up")
}

// saveSysctls records sysctls kubelet rewrites, restored at teardown.
func (c *Cluster) saveSysctls(names ...string) {
	for _, n := range names {
		p := filepath.Join("/proc/sys", n)
		old, err := os.ReadFile(p)
		if err != nil {
			c.t.Fatal(err)
		}
		c.undo = append(c.undo, func() {
			if err := os.WriteFile(p, old, 0o644); err != nil {
				c.t.Errorf("restore %s: %v", p, err)
			}
		})
	}
}

// Tmpfs mounts a tmpfs at dir in the test's mount namespace, making the
// directories it needs on the host; at teardown, after every process of the
// cluster is gone, it is unmounted and those directories removed.
func (c *Cluster) Tmpfs(dir string) {
	var made []string
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		made = append(made, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	c.undo = append(c.undo, func() {
		for _, d := range made {
			_ = os.Remove(d) // deepest first; only if empty
		}
	})
	if err := syscall.Mount("none", dir, "tmpfs", 0, "mode=0755"); err != nil {
		c.t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	c.undo = append(c.undo, func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
}

// credentials writes the service-account key pair, the token file and an
// admin kubeconfig (TLS not verified: the API server's certificate is the
// self-signed one it makes in its --cert-dir).
func (c *Cluster) credentials() {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		c.t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		c.t.Fatal(err)
	}
	c.write("sa.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	c.write("sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		c.t.Fatal(err)
	}
	c.token = hex.EncodeToString(b)
	c.write("tokens.csv", []byte(c.token+",admin,admin-uid,system:masters\n"))
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	c.write("admin.kubeconfig", []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
`, c.Server, c.token)))
}

func (c *Cluster) write(name string, data []byte) string {
	p := filepath.Join(c.Dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *Cluster) apiserver() *proc {
	return c.start(filepath.Join(c.Bin, "kube-apiserver"),
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", apiserverPort),
		"--advertise-address", c.NodeIP,
		"--cert-dir", filepath.Join(c.Dir, "pki"),
		"--token-auth-file", filepath.Join(c.Dir, "tokens.csv"),
		"--authorization-mode=Node,RBAC", "--allow-privileged=true",
		"--service-cluster-ip-range", serviceRange,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(c.Dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(c.Dir, "sa.key"),
		// Logs and exec: the kubelet by its InternalIP only, so no host
		// name is ever looked up.
		"--kubelet-preferred-address-types=InternalIP",
		"--endpoint-reconciler-type=none")
}

// get asks the API server for path with the admin token.
func (c *Cluster) get(path string) error {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the test's own self-signed API server
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Server+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return nil
}

// KubectlErr runs kubectl with the admin kubeconfig and a deadline, and
// returns its trimmed stdout (and stderr in the error).
func (c *Cluster) KubectlErr(args ...string) (string, error) {
	return c.KubectlInput(nil, args...)
}

// KubectlInput is KubectlErr with stdin.
func (c *Cluster) KubectlInput(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.Bin, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// Kubectl is KubectlErr that fails t on an error (t: the test or subtest
// at hand, which may not be the one that started the cluster).
func (c *Cluster) Kubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.KubectlErr(args...)
	if err != nil {
		t.Fatalf("%v%s", err, c.exitedDaemons())
	}
	return out
}

// Apply applies manifests (YAML) through the API server, failing t on an
// error.
func (c *Cluster) Apply(t testing.TB, manifests string) {
	t.Helper()
	if out, err := c.KubectlInput([]byte(manifests), "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s%s", err, out, c.exitedDaemons())
	}
}

// exitedDaemons tells which of the cluster's daemons have exited, with
// the end of their logs: why the API stopped answering.
func (c *Cluster) exitedDaemons() string {
	var b strings.Builder
	for _, p := range c.procs {
		if p.exited() {
			b.WriteString("\n" + p.name + " has exited (" + p.cmd.ProcessState.String() + ")\n" + p.tail(20))
		}
	}
	return b.String()
}

// StopAPIServer kills the cluster's kube-apiserver, by its PID (another
// test binary's cluster runs the same program), as a crash or an outage
// would end it; StartAPIServer starts it again.
func (c *Cluster) StopAPIServer(t testing.TB) {
	t.Helper()
	if c.api == nil || c.api.exited() {
		t.Fatal("the API server is not running")
	}
	_ = c.api.cmd.Process.Kill()
	<-c.api.done
}

// StartAPIServer starts the API server again, on the same etcd, and waits
// until it is ready.
func (c *Cluster) StartAPIServer(t testing.TB) {
	t.Helper()
	c.api = c.apiserver()
	c.waitFor(2*time.Minute, "API server ready again", func() bool { return c.get("/readyz") == nil }, c.api)
}

// KubeletLog is the kubelet's log so far.
func (c *Cluster) KubeletLog() string {
	data, _ := os.ReadFile(c.kubelet.log)
	return string(data)
}
