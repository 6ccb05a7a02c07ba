package packaging

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// The parts of the manifest's objects the tests read.
type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type object struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

type serviceAccount struct {
	Metadata                     objectMeta `yaml:"metadata"`
	AutomountServiceAccountToken *bool      `yaml:"automountServiceAccountToken"`
}

type service struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		ClusterIP string            `yaml:"clusterIP"`
		Selector  map[string]string `yaml:"selector"`
		Ports     []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type daemonSet struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	HostPID                      bool                `yaml:"hostPID"`
	HostNetwork                  bool                `yaml:"hostNetwork"`
	HostIPC                      bool                `yaml:"hostIPC"`
	ServiceAccountName           string              `yaml:"serviceAccountName"`
	AutomountServiceAccountToken *bool               `yaml:"automountServiceAccountToken"`
	PriorityClassName            string              `yaml:"priorityClassName"`
	Tolerations                  []map[string]string `yaml:"tolerations"`
	Volumes                      []struct {
		Name     string `yaml:"name"`
		HostPath *struct {
			Path string `yaml:"path"`
		} `yaml:"hostPath"`
	} `yaml:"volumes"`
	InitContainers  []container    `yaml:"initContainers"`
	Containers      []container    `yaml:"containers"`
	SecurityContext map[string]any `yaml:"securityContext"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		HostPort      int    `yaml:"hostPort"`
	} `yaml:"ports"`
	LivenessProbe  *httpProbe `yaml:"livenessProbe"`
	ReadinessProbe *httpProbe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	SecurityContext struct {
		Privileged               *bool  `yaml:"privileged"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		ProcMount                string `yaml:"procMount"`
		Capabilities             struct {
			Add  []string `yaml:"add"`
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
		AppArmorProfile struct {
			Type string `yaml:"type"`
		} `yaml:"appArmorProfile"`
	} `yaml:"securityContext"`
}

type httpProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// manifest is packaging/kubernetes/daemonset.yaml, one typed value per kind.
type manifest struct {
	namespace string
	sa        serviceAccount
	svc       service
	ds        daemonSet
}

func loadManifest(t *testing.T) manifest {
	t.Helper()
	f, err := os.Open(top + "/packaging/kubernetes/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var m manifest
	kinds := map[string]int{}
	dec := yaml.NewDecoder(f)
	for {
		var doc any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("daemonset.yaml: %v", err)
		}
		b, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		var o object
		if err := yaml.Unmarshal(b, &o); err != nil {
			t.Fatal(err)
		}
		kinds[o.Kind]++
		var into any
		switch o.Kind {
		case "Namespace":
			m.namespace = o.Metadata.Name
			continue
		case "ServiceAccount":
			into = &m.sa
		case "Service":
			into = &m.svc
		case "DaemonSet":
			into = &m.ds
		default:
			t.Fatalf("daemonset.yaml: unexpected %s %s", o.Kind, o.Metadata.Name)
		}
		if err := yaml.Unmarshal(b, into); err != nil {
			t.Fatalf("daemonset.yaml %s: %v", o.Kind, err)
		}
		if o.Metadata.Namespace != m.namespace {
			t.Errorf("%s %s is in namespace %q, not the manifest's %q", o.Kind, o.Metadata.Name, o.Metadata.Namespace, m.namespace)
		}
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "Service", "DaemonSet"} {
		if kinds[k] != 1 {
			t.Fatalf("daemonset.yaml has %d %s objects, want 1", kinds[k], k)
		}
	}
	if len(m.ds.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(m.ds.Spec.Template.Spec.Containers))
	}
	return m
}

func (m manifest) container() container { return m.ds.Spec.Template.Spec.Containers[0] }

// metricsPort is the container port named by the liveness probe.
func (c container) port(name string) int {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// The security-relevant fields: what the pod may do on the node.
func TestDaemonSetManifest(t *testing.T) {
	m := loadManifest(t)
	pod := m.ds.Spec.Template.Spec
	c := m.container()
	sc := c.SecurityContext

	if !pod.HostPID {
		t.Error("hostPID is not true: /proc/1 would be the container's own init, not the node's")
	}
	if pod.HostNetwork || pod.HostIPC {
		t.Error("hostNetwork or hostIPC is on")
	}
	// One volume only: the probe state directory, a hostPath under the
	// node's /run mounted where --probe.state-dir defaults to. Every other
	// node path is reached through /proc/1/root.
	if len(pod.InitContainers) > 0 {
		t.Error("init containers")
	}
	if len(pod.Volumes) != 1 || pod.Volumes[0].HostPath == nil || pod.Volumes[0].HostPath.Path != "/run/mountwatchd" ||
		len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != pod.Volumes[0].Name || c.VolumeMounts[0].MountPath != "/run/mountwatchd" {
		t.Errorf("volumes %+v, mounts %+v: want only the state directory, hostPath /run/mountwatchd at /run/mountwatchd", pod.Volumes, c.VolumeMounts)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged")
	}
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("capabilities.drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	add := slices.Sorted(slices.Values(sc.Capabilities.Add))
	if !slices.Equal(add, []string{"DAC_READ_SEARCH", "SYS_ADMIN", "SYS_PTRACE"}) {
		t.Errorf("capabilities.add %v, want SYS_PTRACE, DAC_READ_SEARCH, SYS_ADMIN", sc.Capabilities.Add)
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation: false with SYS_ADMIN: no boundary, and invalid when spelled CAP_SYS_ADMIN")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("runAsUser is not 0: added capabilities are granted to root only")
	}
	if sc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("seccompProfile %q, want RuntimeDefault", sc.SeccompProfile.Type)
	}
	if sc.ProcMount != "" && sc.ProcMount != "Default" {
		t.Errorf("procMount %q", sc.ProcMount)
	}
	if pod.SecurityContext != nil {
		t.Errorf("pod-level securityContext %v: keep it on the container", pod.SecurityContext)
	}

	for _, a := range []string{"--target.pid=1", "--probe.mount-fusectl"} {
		if !slices.Contains(c.Args, a) {
			t.Errorf("args %v lack %s", c.Args, a)
		}
	}
	if len(c.Command) != 1 || c.Command[0] != "/usr/bin/mountwatchd" {
		t.Errorf("command %v", c.Command)
	}
	port := c.port("metrics")
	if port == 0 {
		t.Fatal("no container port named metrics")
	}
	if listen := flagValues(c.Args, "--web.listen-address"); !slices.Equal(listen, []string{":" + strconv.Itoa(port)}) {
		t.Errorf("--web.listen-address %v, want :%d (the metrics port)", listen, port)
	}
	for name, p := range map[string]*httpProbe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port != "metrics" {
			t.Errorf("%s probe is not httpGet /healthz on port metrics: %+v", name, p)
		}
	}
	if a := m.ds.Spec.Template.Metadata.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != strconv.Itoa(port) {
		t.Errorf("scrape annotations %v", a)
	}
	if !hasFieldRef(c, "NODE_NAME", "spec.nodeName") {
		t.Error("NODE_NAME is not spec.nodeName from the downward API")
	}
	if c.Resources.Requests["memory"] == "" || c.Resources.Requests["cpu"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tol map[string]string) bool {
		return tol["operator"] == "Exists" && tol["key"] == "" && tol["effect"] == ""
	}) {
		t.Errorf("tolerations %v: want operator Exists with no key, to run on every node", pod.Tolerations)
	}
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", pod.PriorityClassName)
	}

	// The objects fit together.
	labels := m.ds.Spec.Template.Metadata.Labels
	for k, v := range m.ds.Spec.Selector.MatchLabels {
		if labels[k] != v {
			t.Errorf("DaemonSet selector %s=%s does not match its pods", k, v)
		}
	}
	for k, v := range m.svc.Spec.Selector {
		if labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the pods", k, v)
		}
	}
	if m.svc.Spec.ClusterIP != "None" || len(m.svc.Spec.Ports) != 1 || m.svc.Spec.Ports[0].Name != "metrics" || m.svc.Spec.Ports[0].TargetPort != "metrics" {
		t.Errorf("Service is not headless on the metrics port: %+v", m.svc.Spec)
	}
	if pod.ServiceAccountName != m.sa.Metadata.Name {
		t.Errorf("serviceAccountName %q, ServiceAccount %q", pod.ServiceAccountName, m.sa.Metadata.Name)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken ||
		m.sa.AutomountServiceAccountToken == nil || *m.sa.AutomountServiceAccountToken {
		t.Error("a service account token is mounted by default: without kubeAPI mountwatchd never talks to the API server")
	}
}

func hasFieldRef(c container, name, path string) bool {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == path {
			return true
		}
	}
	return false
}

// flagValues are the values of flag in args (--flag=value form).
func flagValues(args []string, flag string) []string {
	var v []string
	for _, a := range args {
		if val, ok := strings.CutPrefix(a, flag+"="); ok {
			v = append(v, val)
		}
	}
	return v
}

// containerArgs is the container's command line as the test runs it, with
// what differs from a real node said here: the binary just built instead
// of the image's, the stand-in node's PID instead of PID 1 (the test has no
// hostPID: the node is a shell in a mount namespace of its own, whose table
// is /proc/<pid>/mountinfo and whose files are /proc/<pid>/root/...), and a
// loopback address instead of the pod's :9842.
func containerArgs(t *testing.T, args []string, nodePID int, listen string) []string {
	t.Helper()
	var out []string
	replaced := 0
	for _, a := range args {
		switch {
		case a == "--target.pid=1":
			a = "--target.pid=" + strconv.Itoa(nodePID)
			replaced++
		case strings.HasPrefix(a, "--web.listen-address="):
			a = "--web.listen-address=" + listen
			replaced++
		}
		out = append(out, a)
	}
	if replaced != 2 {
		t.Fatalf("args %v: want one --target.pid=1 and one --web.listen-address", args)
	}
	return out
}

// containerEnv is the container's environment: literal values as they are,
// NODE_NAME as the downward API would set it.
func containerEnv(c container, nodeName string) []string {
	var env []string
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName":
			env = append(env, e.Name+"="+nodeName)
		}
	}
	return cleanEnv(env...)
}

// The brief's requirement of the DaemonSet: it sees and probes the node's
// mounts, including FUSE mounts made after it started. The daemon runs with
// the manifest's exact arguments and environment (see containerArgs) and a
// short probe interval; a ceph-fuse-typed bindfs mount is made in the node
// after the daemon is up, as a CSI pod volume, and its FUSE server is then
// killed: /metrics must show stale_mount on it, with the pod named. Then the
// node-problem-detector plugin's command line runs against the same node.
func TestDaemonSetSeesFUSEMountMadeAfterStart(t *testing.T) {
	testenv.RequireRoot(t)
	bindfs := testenv.RequireCommand(t, "bindfs", "bindfs")
	m := loadManifest(t)
	c := m.container()
	bin := staticBinary(t)

	const (
		uid      = "5f0c2a4e-8b1d-4e7a-9c3f-2d6b8a0e1f47"
		nodeName = "node-a"
	)
	kubelet := "/var/lib/kubelet"
	vol := kubelet + "/pods/" + uid + "/volumes/kubernetes.io~csi/pvc-data"
	mnt := vol + "/mount"
	// The node: kubelet's directories on tmpfs in its own namespace, so
	// nothing is created on this machine.
	node := testenv.NewNode(t, strings.Join([]string{
		"mount -t tmpfs node-var-lib /var/lib",
		"mount -t tmpfs node-var-log /var/log",
		"mkdir -p " + mnt + " " + kubelet + "/backing /var/log/pods/shop_web-0_" + uid,
		`printf '%s' '{"driverName":"cephfs.csi.ceph.com","specVolID":"pvc-data","volumeHandle":"0001-csi-vol-1"}' >` + vol + "/vol_data.json",
		"echo hello >" + kubelet + "/backing/file",
	}, "\n"))
	root := fmt.Sprintf("/proc/%d/root", node.PID)

	addr := testenv.FreeLoopbackAddr(t)
	args := append(containerArgs(t, c.Args, node.PID, addr), "--probe.interval=200ms", "--probe.timeout=2s")
	cmd := exec.Command(bin, args...)
	cmd.Env = containerEnv(c, nodeName)
	stderr := &testenv.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("daemon did not stop within 15s of SIGTERM\n%s", stderr)
		}
	})
	healthz := "http://" + addr + c.LivenessProbe.HTTPGet.Path
	testenv.WaitUntil(t, 30*time.Second, "the liveness probe's /healthz to answer 200", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("daemon exited: %v\n%s", err, stderr)
		default:
		}
		code, _ := get(healthz)
		return code == http.StatusOK
	})
	metrics := func() string {
		code, body := get("http://" + addr + "/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d %s", code, body)
		}
		return body
	}
	if strings.Contains(metrics(), `fstype="fuse.ceph-fuse"`) {
		t.Fatal("a ceph-fuse mount before the test made one")
	}

	// Now, after the daemon started, the FUSE mount appears in the node.
	node.Run(fmt.Sprintf("%s -f --no-allow-other -o subtype=ceph-fuse %s/backing %s </dev/null >/dev/null 2>&1 & echo $! >%s/bindfs.pid",
		bindfs, kubelet, mnt, kubelet))
	pidData, err := os.ReadFile(root + kubelet + "/bindfs.pid")
	if err != nil {
		t.Fatal(err)
	}
	server, err := strconv.Atoi(strings.TrimSpace(string(pidData)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(server, syscall.SIGKILL) })
	testenv.WaitUntil(t, 10*time.Second, "bindfs to mount in the node", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", node.PID))
		return strings.Contains(string(b), " "+mnt+" ") && strings.Contains(string(b), "fuse.ceph-fuse")
	})
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), mnt) {
		t.Fatal("the node's mount is in the test's own namespace: the test would prove nothing")
	}
	testenv.WaitUntil(t, 10*time.Second, "the new mount in /metrics", func() bool {
		return strings.Contains(metrics(), `mountwatchd_mounts{fstype="fuse.ceph-fuse"} 1`)
	})

	// Its FUSE server dies, as an OOM-killed ceph-fuse does: the mount
	// table does not change, only a probe through /proc/<pid>/root sees it.
	if err := syscall.Kill(server, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	series := fmt.Sprintf(`mountwatchd_problem{check="stale_mount",fstype="fuse.ceph-fuse",mountpoint=%q,pod_name="web-0",pod_namespace="shop",pod_uid=%q,severity="critical",source=`, mnt, uid)
	testenv.WaitUntil(t, 20*time.Second, "stale_mount of the dead FUSE mount in /metrics", func() bool {
		return hasSeries(metrics(), series)
	})
	if code, body := get(healthz); code != http.StatusOK {
		t.Errorf("/healthz %d %s with a stale mount", code, body)
	}

	// The same node, checked once: the JSON report names the node from
	// the downward API's NODE_NAME.
	once := func(args ...string) result {
		t.Helper()
		return run(t, time.Minute, containerEnv(c, nodeName), bin, args...)
	}
	r := once("--once", "--output", "json", "--target.pid", strconv.Itoa(node.PID))
	var doc struct {
		Node   string `json:"node"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 1 || doc.Node != nodeName || doc.Status != "problems" {
		t.Errorf("--once --output json: exit %d, node %q, status %q, %v\n%s%s", r.code, doc.Node, doc.Status, err, r.stdout, r.stderr)
	}

	t.Run("npd-plugin", func(t *testing.T) { testNPDPlugin(t, bin, node.PID, mnt) })
}

// npdConfig is node-problem-detector's custom plugin monitor configuration
// (pkg/custompluginmonitor/types: CustomPluginConfig, CustomRule).
type npdConfig struct {
	Plugin       string `json:"plugin"`
	PluginConfig struct {
		InvokeInterval  string `json:"invoke_interval"`
		Timeout         string `json:"timeout"`
		MaxOutputLength *int   `json:"max_output_length"`
		Concurrency     *int   `json:"concurrency"`
		MessageChange   *bool  `json:"enable_message_change_based_condition_update"`
		SkipInitial     *bool  `json:"skip_initial_status"`
	} `json:"pluginConfig"`
	Source           string         `json:"source"`
	MetricsReporting *bool          `json:"metricsReporting"`
	Conditions       []npdCondition `json:"conditions"`
	Rules            []struct {
		Type      string   `json:"type"`
		Condition string   `json:"condition"`
		Reason    string   `json:"reason"`
		Path      string   `json:"path"`
		Args      []string `json:"args"`
		Timeout   string   `json:"timeout"`
	} `json:"rules"`
}

type npdCondition struct {
	Type    string `json:"type"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// testNPDPlugin validates the plugin configuration the way NPD does
// (ApplyConfiguration, Validate) and runs its rule's command line against
// the node with the dead FUSE mount: exit 1 (NonOK), and the message NPD
// keeps (stdout trimmed and cut at max_output_length) begins with the
// whole summary line.
func testNPDPlugin(t *testing.T, bin string, nodePID int, mnt string) {
	data, err := os.ReadFile(top + "/packaging/kubernetes/npd-custom-plugin.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg npdConfig
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields() // a misspelt field would be ignored by NPD
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("npd-custom-plugin.json: %v", err)
	}
	if cfg.Plugin != "custom" || cfg.Source == "" || len(cfg.Rules) != 1 {
		t.Fatalf("plugin %q, source %q, %d rules", cfg.Plugin, cfg.Source, len(cfg.Rules))
	}
	global, err := time.ParseDuration(cfg.PluginConfig.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := time.ParseDuration(cfg.PluginConfig.InvokeInterval); err != nil {
		t.Fatal(err)
	}
	maxOut := 80 // NPD's default
	if cfg.PluginConfig.MaxOutputLength != nil {
		maxOut = *cfg.PluginConfig.MaxOutputLength
	}
	if maxOut < 80 {
		t.Errorf("max_output_length %d cuts the 80-byte summary", maxOut)
	}
	rule := cfg.Rules[0]
	timeout, err := time.ParseDuration(rule.Timeout)
	if err != nil || timeout > global {
		t.Errorf("rule timeout %q: NPD refuses one above the global %s (%v)", rule.Timeout, global, err)
	}
	if rule.Type == "permanent" && !slices.ContainsFunc(cfg.Conditions, func(c npdCondition) bool {
		return c.Type == rule.Condition
	}) {
		t.Errorf("permanent rule's condition %q has no default condition", rule.Condition)
	}
	if rule.Path != "/usr/bin/mountwatchd" || !slices.Contains(rule.Args, "--once") || !slices.Contains(rule.Args, "--target.pid=1") {
		t.Fatalf("rule runs %s %v, want /usr/bin/mountwatchd --once --target.pid=1", rule.Path, rule.Args)
	}

	// The rule's command line: this test's binary for the path, the node's
	// PID for PID 1 (see containerArgs); NPD's timeout as the deadline.
	var args []string
	for _, a := range rule.Args {
		if a == "--target.pid=1" {
			a = "--target.pid=" + strconv.Itoa(nodePID)
		}
		args = append(args, a)
	}
	r := run(t, timeout, cleanEnv(), bin, args...)
	first := r.firstLine()
	if r.code != 1 || len(first) > 80 || !strings.Contains(first, "stale_mount") {
		t.Errorf("plugin: exit %d (want 1), first line %q (%d bytes; want stale_mount, at most 80)\n%s%s", r.code, first, len(first), r.stdout, r.stderr)
	}
	msg := strings.TrimSpace(r.stdout)
	msg = msg[:min(len(msg), maxOut)]
	if !strings.HasPrefix(msg, first) {
		t.Errorf("NPD's message %q does not begin with the summary %q", msg, first)
	}
	if !strings.Contains(r.stdout, mnt) {
		t.Errorf("the report does not name %s:\n%s", mnt, r.stdout)
	}
	if r.stderr != "" {
		t.Logf("plugin stderr (NPD logs it):\n%s", r.stderr)
	}
}
