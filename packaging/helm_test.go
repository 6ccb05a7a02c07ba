package packaging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

const chartDir = top + "/packaging/helm/mountwatchd"

// helm is the helm program, at the version the Makefile pins (make tools
// installs it): the generated manifests are compared byte for byte, and
// another version may render whitespace differently.
func helm(t *testing.T) string {
	t.Helper()
	return goTool(t, "helm", "helm.sh/helm/v3", "HELM_VERSION")
}

// goTool is a program that make tools installs with go install: on PATH or
// in $(go env GOPATH)/bin, built from module at the version the Makefile's
// variable pins (read from the binary's build info: go install leaves
// helm's own version string short).
func goTool(t *testing.T, name, module, makeVar string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if gobin := filepath.Join(strings.TrimSpace(testenv.Run(t, "go", "env", "GOPATH")), "bin", name); fileExists(gobin) {
			p, err = gobin, nil
		}
	}
	testenv.Require(t, err == nil, "%s on PATH or in $(go env GOPATH)/bin (make tools)", name)
	mk, err := os.ReadFile(top + "/Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + makeVar + `\s*\?=\s*(\S+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatalf("no %s in the Makefile", makeVar)
	}
	out, err := exec.Command("go", "version", "-m", p).CombinedOutput()
	if err != nil || !regexp.MustCompile(`(?m)^\s+mod\s+`+regexp.QuoteMeta(module)+`\s+`+regexp.QuoteMeta(string(m[1]))+`\s`).Match(out) {
		t.Fatalf("%s is not %s %s, which the Makefile pins (%v): run make tools\n%s", p, module, m[1], err, out)
	}
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func helmRun(t *testing.T, args ...string) string {
	t.Helper()
	h := helm(t)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(h, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// objects are rendered Kubernetes objects, each decoded strictly into its
// API type: a field the type does not have, a misspelt one, or a duplicate
// key fails the test, as the API server would reject or silently drop it.
type objects struct {
	namespaces      []corev1.Namespace
	serviceAccounts []corev1.ServiceAccount
	services        []corev1.Service
	configMaps      []corev1.ConfigMap
	daemonSets      []appsv1.DaemonSet
	clusterRoles    []rbacv1.ClusterRole
	bindings        []rbacv1.ClusterRoleBinding
	monitors        []monitoringv1.ServiceMonitor
	rules           []monitoringv1.PrometheusRule
}

func decodeObjects(t *testing.T, rendered string) objects {
	t.Helper()
	var o objects
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(rendered, -1) {
		var tm metav1.TypeMeta
		if err := sigsyaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
		if tm.Kind == "" {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(doc, "")) != "" {
				t.Fatalf("document %d has no kind:\n%s", i, doc)
			}
			continue
		}
		strict := func(into any) {
			if err := sigsyaml.UnmarshalStrict([]byte(doc), into); err != nil {
				t.Fatalf("%s (document %d) does not decode strictly into its API type: %v\n%s", tm.Kind, i, err, doc)
			}
		}
		want := map[string]string{
			"Namespace": "v1", "ServiceAccount": "v1", "Service": "v1", "ConfigMap": "v1", "DaemonSet": "apps/v1",
			"ClusterRole": "rbac.authorization.k8s.io/v1", "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
			"ServiceMonitor": "monitoring.coreos.com/v1", "PrometheusRule": "monitoring.coreos.com/v1",
		}[tm.Kind]
		if want == "" || tm.APIVersion != want {
			t.Fatalf("document %d: %s %s is not a kind the tests know (want apiVersion %q)", i, tm.APIVersion, tm.Kind, want)
		}
		switch tm.Kind {
		case "Namespace":
			o.namespaces = append(o.namespaces, corev1.Namespace{})
			strict(&o.namespaces[len(o.namespaces)-1])
		case "ServiceAccount":
			o.serviceAccounts = append(o.serviceAccounts, corev1.ServiceAccount{})
			strict(&o.serviceAccounts[len(o.serviceAccounts)-1])
		case "Service":
			o.services = append(o.services, corev1.Service{})
			strict(&o.services[len(o.services)-1])
		case "ConfigMap":
			o.configMaps = append(o.configMaps, corev1.ConfigMap{})
			strict(&o.configMaps[len(o.configMaps)-1])
		case "DaemonSet":
			o.daemonSets = append(o.daemonSets, appsv1.DaemonSet{})
			strict(&o.daemonSets[len(o.daemonSets)-1])
		case "ClusterRole":
			o.clusterRoles = append(o.clusterRoles, rbacv1.ClusterRole{})
			strict(&o.clusterRoles[len(o.clusterRoles)-1])
		case "ClusterRoleBinding":
			o.bindings = append(o.bindings, rbacv1.ClusterRoleBinding{})
			strict(&o.bindings[len(o.bindings)-1])
		case "ServiceMonitor":
			o.monitors = append(o.monitors, monitoringv1.ServiceMonitor{})
			strict(&o.monitors[len(o.monitors)-1])
		case "PrometheusRule":
			o.rules = append(o.rules, monitoringv1.PrometheusRule{})
			strict(&o.rules[len(o.rules)-1])
		}
	}
	return o
}

func (o objects) count() int {
	return len(o.namespaces) + len(o.serviceAccounts) + len(o.services) + len(o.configMaps) + len(o.daemonSets) +
		len(o.clusterRoles) + len(o.bindings) + len(o.monitors) + len(o.rules)
}

func (o objects) daemonSet(t *testing.T, name string) appsv1.DaemonSet {
	t.Helper()
	for _, ds := range o.daemonSets {
		if ds.Name == name {
			return ds
		}
	}
	t.Fatalf("no DaemonSet %s", name)
	return appsv1.DaemonSet{}
}

func (o objects) configMap(t *testing.T, name string) corev1.ConfigMap {
	t.Helper()
	for _, cm := range o.configMaps {
		if cm.Name == name {
			return cm
		}
	}
	t.Fatalf("no ConfigMap %s", name)
	return corev1.ConfigMap{}
}

func template(t *testing.T, release string, sets ...string) string {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", "monitoring", "--kube-version", "1.30.0"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	return helmRun(t, args...)
}

var allOptions = []string{"prometheus.monitor.enabled=true", "prometheusRule.enabled=true",
	"grafanaDashboard.enabled=true", "nodeProblemDetector.enabled=true"}

// helm lint passes with the defaults and with every option on.
func TestHelmLint(t *testing.T) {
	for _, sets := range [][]string{nil, allOptions} {
		args := []string{"lint", "--strict", "--kube-version", "1.30.0", chartDir}
		for _, s := range sets {
			args = append(args, "--set", s)
		}
		out := helmRun(t, args...)
		if !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") {
			t.Errorf("helm lint %v:\n%s", sets, out)
		}
	}
}

// The chart's defaults render exactly what the plain manifest's tests hold
// the DaemonSet to (TestDaemonSetManifest reads the rendered copy), and
// only those objects; values change what they say they change.
func TestHelmTemplate(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		o := decodeObjects(t, template(t, "mountwatchd"))
		if o.count() != 3 || len(o.serviceAccounts) != 1 || len(o.services) != 1 || len(o.daemonSets) != 1 {
			t.Fatalf("defaults render %d objects, want a ServiceAccount, a Service and a DaemonSet", o.count())
		}
		ds := o.daemonSets[0]
		if ds.Name != "mountwatchd" || ds.Namespace != "monitoring" {
			t.Errorf("DaemonSet %s/%s", ds.Namespace, ds.Name)
		}
		c := ds.Spec.Template.Spec.Containers[0]
		if c.Image != "ghcr.io/mountwatchd/mountwatchd:v0.1.0" {
			t.Errorf("image %s, want the tag v<appVersion>", c.Image)
		}
		if o.services[0].Labels["app.kubernetes.io/name"] != "mountwatchd" {
			t.Error("the Service's app.kubernetes.io/name (the ServiceMonitor's job label) is not mountwatchd")
		}
	})

	t.Run("values", func(t *testing.T) {
		o := decodeObjects(t, template(t, "edge",
			"image.registry=registry.example", "image.repository=infra/mountwatchd", "image.tag=v9.9.9",
			"priorityClassName=node-critical-2", "tolerations[0].key=dedicated", "tolerations[0].operator=Equal",
			"tolerations[0].value=storage", "tolerations[0].effect=NoSchedule",
			"resources.limits.memory=1Gi", "extraArgs[0]=--probe.timeout=10s", "extraArgs[1]=--scan.root=/data",
			"mountFusectl=false", "service.port=9100", "goMemLimit="))
		ds := o.daemonSet(t, "edge-mountwatchd")
		pod := ds.Spec.Template.Spec
		c := pod.Containers[0]
		if c.Image != "registry.example/infra/mountwatchd:v9.9.9" {
			t.Errorf("image %s", c.Image)
		}
		if pod.PriorityClassName != "node-critical-2" {
			t.Errorf("priorityClassName %q", pod.PriorityClassName)
		}
		if len(pod.Tolerations) != 1 || pod.Tolerations[0].Key != "dedicated" || pod.Tolerations[0].Effect != corev1.TaintEffectNoSchedule {
			t.Errorf("tolerations %+v", pod.Tolerations)
		}
		if q := c.Resources.Limits[corev1.ResourceMemory]; q.String() != "1Gi" {
			t.Errorf("memory limit %s", q.String())
		}
		wantArgs := []string{"--target.pid=1", "--web.listen-address=:9100", "--log.target=stderr", "--probe.timeout=10s", "--scan.root=/data"}
		if !slices.Equal(c.Args, wantArgs) {
			t.Errorf("args %v, want %v", c.Args, wantArgs)
		}
		if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9100 || o.services[0].Spec.Ports[0].Port != 9100 ||
			pod.Containers[0].LivenessProbe.HTTPGet.Port.StrVal != "metrics" || ds.Spec.Template.Annotations["prometheus.io/port"] != "9100" {
			t.Errorf("service.port=9100 not used everywhere: ports %+v, annotations %v", c.Ports, ds.Spec.Template.Annotations)
		}
		for _, e := range c.Env {
			if e.Name == "GOMEMLIMIT" {
				t.Errorf("goMemLimit empty, but GOMEMLIMIT=%q", e.Value)
			}
		}
		digest := "sha256:" + strings.Repeat("ab", 32)
		o = decodeObjects(t, template(t, "pinned", "image.digest="+digest))
		if img := o.daemonSets[0].Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/mountwatchd/mountwatchd@"+digest {
			t.Errorf("image.digest: image %s", img)
		}
	})

	t.Run("options", func(t *testing.T) {
		o := decodeObjects(t, template(t, "mountwatchd", allOptions...))
		svc := o.services[0]

		// ServiceMonitor: selects the Service, scrapes its metrics port,
		// takes job from a label the Service has, with the value the rules
		// select, and sets instance to the node's name.
		if len(o.monitors) != 1 {
			t.Fatalf("%d ServiceMonitors", len(o.monitors))
		}
		sm := o.monitors[0].Spec
		for k, v := range sm.Selector.MatchLabels {
			if svc.Labels[k] != v {
				t.Errorf("ServiceMonitor selects %s=%s; the Service has %q", k, v, svc.Labels[k])
			}
		}
		if svc.Labels[sm.JobLabel] != "mountwatchd" {
			t.Errorf("jobLabel %q: the Service's value is %q, the alerting rules select job=\"mountwatchd\"", sm.JobLabel, svc.Labels[sm.JobLabel])
		}
		if len(sm.Endpoints) != 1 || sm.Endpoints[0].Port != svc.Spec.Ports[0].Name {
			t.Errorf("endpoints %+v do not scrape the Service's port %s", sm.Endpoints, svc.Spec.Ports[0].Name)
		}
		if !slices.ContainsFunc(sm.Endpoints[0].RelabelConfigs, func(r monitoringv1.RelabelConfig) bool {
			return slices.Equal(r.SourceLabels, []monitoringv1.LabelName{"__meta_kubernetes_pod_node_name"}) && r.TargetLabel == "instance"
		}) {
			t.Error("the ServiceMonitor does not set instance to the node name")
		}

		// PrometheusRule: the very rules of packaging/prometheus.
		if len(o.rules) != 1 {
			t.Fatalf("%d PrometheusRules", len(o.rules))
		}
		rf := readRules(t)
		got := o.rules[0].Spec.Groups
		if len(got) != len(rf.Groups) {
			t.Fatalf("PrometheusRule has %d groups, the rules file %d", len(got), len(rf.Groups))
		}
		for i, g := range rf.Groups {
			if got[i].Name != g.Name || len(got[i].Rules) != len(g.Rules) {
				t.Fatalf("group %d: %s with %d rules, want %s with %d", i, got[i].Name, len(got[i].Rules), g.Name, len(g.Rules))
			}
			for j, r := range g.Rules {
				pr := got[i].Rules[j]
				if pr.Alert != r.Alert || pr.Expr.String() != r.Expr || string(*pr.For) != r.For ||
					fmt.Sprint(pr.Labels) != fmt.Sprint(r.Labels) || fmt.Sprint(pr.Annotations) != fmt.Sprint(r.Annotations) {
					t.Errorf("rule %s differs from the rules file", r.Alert)
				}
			}
		}

		// The dashboard ConfigMap carries the dashboard, for the sidecar.
		cm := o.configMap(t, "mountwatchd-dashboard")
		dash, _ := os.ReadFile(promDir + "/mountwatchd-dashboard.json")
		if cm.Labels["grafana_dashboard"] != "1" || strings.TrimSpace(cm.Data["mountwatchd.json"]) != strings.TrimSpace(string(dash)) {
			t.Error("the dashboard ConfigMap is not labelled grafana_dashboard=1 with the dashboard")
		}

		testNPDOption(t, o)
	})
}

// The node-problem-detector option: NPD runs the plugin config of
// packaging/kubernetes as the DaemonSet runs mountwatchd (host PID
// namespace, the same security context), with the binary an init
// container of the mountwatchd image copied into a shared volume at the
// path the plugin config names.
func testNPDOption(t *testing.T, o objects) {
	ds := o.daemonSet(t, "mountwatchd-npd")
	mw := o.daemonSet(t, "mountwatchd")
	pod := ds.Spec.Template.Spec
	if !pod.HostPID || len(pod.InitContainers) != 1 || len(pod.Containers) != 1 {
		t.Fatalf("NPD pod: hostPID %v, %d init containers, %d containers", pod.HostPID, len(pod.InitContainers), len(pod.Containers))
	}
	plugin, err := os.ReadFile(top + "/packaging/kubernetes/npd-custom-plugin.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg npdConfig
	if err := json.Unmarshal(plugin, &cfg); err != nil {
		t.Fatal(err)
	}
	cm := o.configMap(t, "mountwatchd-npd")
	if strings.TrimSpace(cm.Data["mountwatchd.json"]) != strings.TrimSpace(string(plugin)) {
		t.Error("the NPD ConfigMap is not packaging/kubernetes/npd-custom-plugin.json")
	}

	init := pod.InitContainers[0]
	mwImage := mw.Spec.Template.Spec.Containers[0].Image
	if init.Image != mwImage || len(init.Command) != 2 || init.Command[0] != "/usr/bin/mountwatchd" {
		t.Fatalf("init container %s %v, want the mountwatchd image running --install-to", init.Image, init.Command)
	}
	dir, ok := strings.CutPrefix(init.Command[1], "--install-to=")
	if !ok {
		t.Fatalf("init container command %v", init.Command)
	}
	volumeAt := func(c corev1.Container, path string) (corev1.VolumeMount, bool) {
		for _, m := range c.VolumeMounts {
			if m.MountPath == path {
				return m, true
			}
		}
		return corev1.VolumeMount{}, false
	}
	initMount, ok := volumeAt(init, dir)
	if !ok {
		t.Fatalf("the init container installs to %s, which is no volume", dir)
	}
	npd := pod.Containers[0]
	// NPD runs the rule's path: the copied binary, by subPath, from the
	// same volume.
	binMount, ok := volumeAt(npd, cfg.Rules[0].Path)
	if !ok || binMount.Name != initMount.Name || binMount.SubPath != "mountwatchd" {
		t.Errorf("NPD's %s is not the init container's %s/mountwatchd: %+v", cfg.Rules[0].Path, dir, binMount)
	}
	configArg := ""
	for _, a := range npd.Command {
		if v, ok := strings.CutPrefix(a, "--config.custom-plugin-monitor="); ok {
			configArg = v
		}
	}
	cfgMount, ok := volumeAt(npd, filepath.Dir(configArg))
	if !ok || configArg == "" {
		t.Fatalf("NPD's --config.custom-plugin-monitor %q is in no volume", configArg)
	}
	for _, v := range pod.Volumes {
		switch v.Name {
		case initMount.Name:
			if v.EmptyDir == nil {
				t.Errorf("volume %s is not an emptyDir", v.Name)
			}
		case cfgMount.Name:
			if v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
				t.Errorf("volume %s is not ConfigMap %s", v.Name, cm.Name)
			} else if _, ok := cm.Data[filepath.Base(configArg)]; !ok {
				t.Errorf("ConfigMap %s has no %s", cm.Name, filepath.Base(configArg))
			}
		}
	}
	// The plugin inherits NPD's privileges: exactly mountwatchd's. The
	// init container needs none.
	mwSC, _ := json.Marshal(mw.Spec.Template.Spec.Containers[0].SecurityContext)
	npdSC, _ := json.Marshal(npd.SecurityContext)
	if !bytes.Equal(mwSC, npdSC) {
		t.Errorf("NPD's security context %s is not mountwatchd's %s", npdSC, mwSC)
	}
	if sc := init.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.Capabilities == nil ||
		len(sc.Capabilities.Add) != 0 || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("the init container's security context %+v: want non-root with no capabilities", sc)
	}
	if !slices.ContainsFunc(npd.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}) {
		t.Error("NPD has no NODE_NAME from spec.nodeName")
	}
	// NPD patches the node's status and records events, as its service
	// account, bound to a role that allows exactly that.
	if len(o.clusterRoles) != 1 || len(o.bindings) != 1 || o.bindings[0].RoleRef.Name != o.clusterRoles[0].Name ||
		len(o.bindings[0].Subjects) != 1 || o.bindings[0].Subjects[0].Name != pod.ServiceAccountName {
		t.Fatalf("RBAC: %d roles, %d bindings, not bound to %s", len(o.clusterRoles), len(o.bindings), pod.ServiceAccountName)
	}
	allows := func(resource, verb string) bool {
		return slices.ContainsFunc(o.clusterRoles[0].Rules, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb)
		})
	}
	for _, rv := range [][2]string{{"nodes", "get"}, {"nodes/status", "patch"}, {"events", "create"}} {
		if !allows(rv[0], rv[1]) {
			t.Errorf("NPD's ClusterRole does not allow %s %s", rv[1], rv[0])
		}
	}
}

// The plain manifest and the Operator objects in packaging/ are the chart
// rendered, and the chart's copies of the rules, the dashboard and the NPD
// plugin config are the originals: make manifests leaves nothing to do.
func TestManifestsUpToDate(t *testing.T) {
	h := helm(t)
	for _, f := range []string{"packaging/prometheus/mountwatchd.rules.yml", "packaging/prometheus/mountwatchd-dashboard.json",
		"packaging/kubernetes/npd-custom-plugin.json"} {
		want, err := os.ReadFile(top + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(chartDir + "/files/" + filepath.Base(f)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("packaging/helm/mountwatchd/files/%s is not %s: run make manifests (%v)", filepath.Base(f), f, err)
		}
	}
	out := t.TempDir()
	cmd := exec.Command(top+"/packaging/kubernetes/generate.sh", out)
	cmd.Env = append(os.Environ(), "HELM="+h)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generate.sh: %v\n%s", err, b)
	}
	for _, f := range []string{"packaging/kubernetes/daemonset.yaml", "packaging/prometheus/servicemonitor.yaml", "packaging/prometheus/prometheusrule.yaml"} {
		want, _ := os.ReadFile(filepath.Join(out, f))
		got, err := os.ReadFile(top + "/" + f)
		if err != nil || !bytes.Equal(got, want) || len(want) == 0 {
			t.Errorf("%s is not what the chart renders: run make manifests (%v)", f, err)
		}
	}

	// What kubectl apply gets decodes strictly, too.
	data, err := os.ReadFile(top + "/packaging/kubernetes/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o := decodeObjects(t, string(data))
	if len(o.namespaces) != 1 || o.count() != 4 {
		t.Errorf("daemonset.yaml: %d objects, want Namespace, ServiceAccount, Service, DaemonSet", o.count())
	}
	for _, f := range []string{"servicemonitor.yaml", "prometheusrule.yaml"} {
		data, err := os.ReadFile(promDir + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if o := decodeObjects(t, string(data)); o.count() != 1 || len(o.monitors)+len(o.rules) != 1 {
			t.Errorf("%s: %d objects", f, o.count())
		}
	}
}
