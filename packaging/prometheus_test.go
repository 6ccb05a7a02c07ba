package packaging

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

const promDir = top + "/packaging/prometheus"

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	data, err := os.ReadFile(promDir + "/mountwatchd.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(data, &rf); err != nil {
		t.Fatalf("mountwatchd.rules.yml: %v", err)
	}
	return rf
}

func promtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	p := testenv.RequireCommand(t, "promtool", "prometheus")
	cmd := exec.Command(p, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// exposedMetrics are the metric names mountwatchd exports: those of the
// golden exposition (internal/export) and build_info (the version
// collector's).
func exposedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{"mountwatchd_build_info": true}
	// The daemon's, then with --kube.*: the link's and mountwatchd-kube's
	// (relayed by the daemon).
	for _, golden := range []string{"internal/export", "internal/kubelink", "internal/kubeapi"} {
		data, err := os.ReadFile(top + "/" + golden + "/testdata/metrics.prom")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^# TYPE (mountwatchd_\w+) `).FindAllStringSubmatch(string(data), -1) {
			names[m[1]] = true
		}
	}
	return names
}

var metricName = regexp.MustCompile(`\bmountwatchd_[a-z_]+\b`)

// unknownMetrics are the mountwatchd_* names in s that mountwatchd does not
// export: a typo there parses fine and never matches anything.
func unknownMetrics(s string, known map[string]bool) []string {
	var bad []string
	for _, n := range metricName.FindAllString(s, -1) {
		if !known[n] && !slices.Contains(bad, n) {
			bad = append(bad, n)
		}
	}
	return bad
}

// The alerting rules parse (promtool check rules), their unit tests pass
// (promtool test rules), every alert has a test, every check has a
// per-problem alert, and every metric they name exists.
func TestAlertRules(t *testing.T) {
	out := promtool(t, promDir, "check", "rules", "mountwatchd.rules.yml")
	t.Logf("%s", strings.TrimSpace(out))
	out = promtool(t, promDir, "test", "rules", "mountwatchd.rules.test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules:\n%s", out)
	}

	rf := readRules(t)
	tests, err := os.ReadFile(promDir + "/mountwatchd.rules.test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(tests, &tf); err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]int{}, map[string]int{}
	for _, tc := range tf.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname]++
			} else {
				silent[a.Alertname]++
			}
		}
	}
	known := exposedMetrics(t)
	perCheck := map[string][]string{} // check -> severities with a per-problem alert
	checkSel := regexp.MustCompile(`^mountwatchd_problem\{job="mountwatchd",check="(\w+)",severity="(\w+)"\} == 1$`)
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if fires[r.Alert] == 0 || silent[r.Alert] == 0 {
				t.Errorf("alert %s: %d tests where it fires, %d where it must not; want both", r.Alert, fires[r.Alert], silent[r.Alert])
			}
			if sev := r.Labels["severity"]; sev != "critical" && sev != "warning" && sev != "info" {
				t.Errorf("alert %s: severity %q", r.Alert, sev)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s lacks a summary or description", r.Alert)
			}
			if bad := unknownMetrics(r.Expr, known); len(bad) > 0 {
				t.Errorf("alert %s uses metrics mountwatchd does not export: %v", r.Alert, bad)
			}
			if m := checkSel.FindStringSubmatch(r.Expr); m != nil {
				if m[2] != r.Labels["severity"] {
					t.Errorf("alert %s selects severity %s but is labelled %s", r.Alert, m[2], r.Labels["severity"])
				}
				perCheck[m[1]] = append(perCheck[m[1]], m[2])
				for _, want := range []string{"$labels.pod_name", "$labels.volume", "$labels.mountpoint"} {
					if !strings.Contains(r.Annotations["description"], want) {
						t.Errorf("alert %s: the description does not name %s", r.Alert, want)
					}
				}
			}
		}
	}
	for _, check := range checkIDs(t) {
		if len(perCheck[check]) == 0 {
			t.Errorf("no per-problem alert for check %s", check)
		}
	}
}

// checkIDs is mountwatchd's catalogue of checks, as --once lists them.
func checkIDs(t *testing.T) []string {
	t.Helper()
	r := run(t, time.Minute, cleanEnv(), staticBinary(t), "--mountinfo", top+"/internal/mounts/testdata/k8s-node-brief.mountinfo", "--output", "json")
	var doc struct {
		Checks []struct {
			Check string `json:"check"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Checks) == 0 {
		t.Fatalf("--once --output json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	var ids []string
	for _, c := range doc.Checks {
		ids = append(ids, c.Check)
	}
	return ids
}

// The Grafana dashboard: every PromQL query in it is parsed by Prometheus'
// own parser and names only metrics mountwatchd exports.
//
// The parser: promtool check rules, which parses each rule's expression
// with the PromQL parser of the Prometheus release installed (Debian's
// prometheus package, which CI installs for the other tests anyway). The
// test writes every query, Grafana's variables replaced by values of the
// same syntactic kind, as a recording rule. Importing
// github.com/prometheus/prometheus/promql/parser instead would pull the
// Prometheus server's module into mountwatchd's go.mod for one test.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(promDir + "/mountwatchd-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	}
	var dash struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID      int      `json:"id"`
			Type    string   `json:"type"`
			Title   string   `json:"title"`
			Targets []target `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Errorf("uid %q title %q", dash.UID, dash.Title)
	}
	queries := map[string]string{} // where -> PromQL
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q target %s has no expr", p.Title, tg.RefID)
			}
			queries[fmt.Sprintf("panel %q target %s", p.Title, tg.RefID)] = tg.Expr
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+), *\w+\)$`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)["query"].(string)
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(SELECTOR, LABEL)", v.Name, q)
			continue
		}
		queries["variable "+v.Name] = m[1]
	}
	// Grafana's variables, as the values they stand for.
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "${datasource}", "x", "$instance", ".*")
	known := exposedMetrics(t)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	i := 0
	for _, where := range slices.Sorted(func(yield func(string) bool) {
		for k := range queries {
			if !yield(k) {
				return
			}
		}
	}) {
		q := vars.Replace(queries[where])
		if strings.Contains(q, "$") {
			t.Errorf("%s: a variable the test does not know: %s", where, q)
		}
		if bad := unknownMetrics(q, known); len(bad) > 0 {
			t.Errorf("%s uses metrics mountwatchd does not export: %v", where, bad)
		}
		i++
		quoted, _ := json.Marshal(q) // a JSON string is a YAML string
		fmt.Fprintf(&rules, "      # %s\n      - record: dashboard:query_%d\n        expr: %s\n", where, i, quoted)
	}
	file := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := promtool(t, ".", "check", "rules", file)
	if want := fmt.Sprintf("SUCCESS: %d rules found", i); !strings.Contains(out, want) {
		t.Errorf("promtool check rules: want %q\n%s", want, out)
	}
	t.Logf("%d dashboard queries parsed by promtool", i)
}
