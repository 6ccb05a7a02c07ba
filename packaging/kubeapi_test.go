package packaging

import (
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// TestHelmKubeAPIRBAC: each kubeAPI switch mounts the token, passes its
// flag and adds exactly the rules its requests need to the ClusterRole
// bound to mountwatchd's ServiceAccount; with none on there is no token and
// no RBAC of mountwatchd's (TestDaemonSetManifest checks the defaults).
func TestHelmKubeAPIRBAC(t *testing.T) {
	events := []string{"events:create", "events:patch", "persistentvolumes:get"}
	cond := []string{"nodes/status:patch"}
	taint := []string{"nodes:get", "nodes:patch"}
	for _, tc := range []struct {
		sets  []string
		flags []string
		rules []string
	}{
		{[]string{"kubeAPI.events=true"}, []string{"--kube.events"}, events},
		{[]string{"kubeAPI.condition=true"}, []string{"--kube.condition", "--kube.condition-type=MountProblem"}, cond},
		{[]string{"kubeAPI.taint=true", "kubeAPI.clearOnStop=true"}, []string{"--kube.taint", "--kube.clear-on-stop"}, taint},
		{[]string{"kubeAPI.events=true", "kubeAPI.condition=true", "kubeAPI.conditionType=MountwatchdProblem", "kubeAPI.taint=true",
			"nodeProblemDetector.enabled=true"},
			[]string{"--kube.events", "--kube.condition", "--kube.condition-type=MountwatchdProblem", "--kube.taint"},
			append(append(slices.Clone(events), cond...), taint...)},
	} {
		o := decodeObjects(t, template(t, "mountwatchd", tc.sets...))
		ds := o.daemonSet(t, "mountwatchd")
		pod := ds.Spec.Template.Spec
		if pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
			t.Errorf("%v: no token mounted", tc.sets)
		}
		args := pod.Containers[0].Args
		for _, f := range tc.flags {
			if !slices.Contains(args, f) {
				t.Errorf("%v: no %s in %v", tc.sets, f, args)
			}
		}
		var role *rbacv1.ClusterRole
		for i := range o.clusterRoles {
			if o.clusterRoles[i].Name == "mountwatchd" {
				role = &o.clusterRoles[i]
			}
		}
		if role == nil {
			t.Fatalf("%v: no ClusterRole mountwatchd", tc.sets)
		}
		var got []string
		for _, r := range role.Rules {
			if len(r.APIGroups) != 1 || r.APIGroups[0] != "" || len(r.ResourceNames) != 0 {
				t.Errorf("%v: rule %+v is not of the core group", tc.sets, r)
			}
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					got = append(got, res+":"+v)
				}
			}
		}
		sort.Strings(got)
		want := slices.Clone(tc.rules)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%v: ClusterRole allows %v, want exactly %v", tc.sets, got, want)
		}
		bound := slices.ContainsFunc(o.bindings, func(b rbacv1.ClusterRoleBinding) bool {
			return b.RoleRef.Name == role.Name && len(b.Subjects) == 1 && b.Subjects[0].Name == pod.ServiceAccountName &&
				b.Subjects[0].Namespace == "monitoring"
		})
		if !bound {
			t.Errorf("%v: the ClusterRole is not bound to %s", tc.sets, pod.ServiceAccountName)
		}
	}
	// Two writers of one condition type: refused.
	out, err := exec.Command(helm(t), "template", "mountwatchd", chartDir, "--kube-version", "1.30.0",
		"--set", "kubeAPI.condition=true", "--set", "nodeProblemDetector.enabled=true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "set kubeAPI.conditionType") {
		t.Errorf("condition MountProblem from both mountwatchd and NPD's plugin rendered: %v\n%s", err, out)
	}
}
