package packaging

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/mountwatchd/mountwatchd/internal/check"
)

// repoDocs is where the shipped rules and dashboard link each runbook: the
// repository's docs/ directory. The chart's runbookBaseURL replaces it.
const repoDocs = "https://github.com/mountwatchd/mountwatchd/blob/main/docs/"

// checkSections are the sections of every check's page (the Prometheus
// Operator's runbooks, plus what a Kubernetes user needs); alertSections
// those of a page of the daemon's own alerts.
var (
	checkSections = []string{"Meaning", "Kubernetes symptoms", "Impact", "Diagnosis", "Mitigation", "What not to do", "Examples"}
	alertSections = []string{"Meaning", "Impact", "Diagnosis", "Mitigation", "What not to do"}
	// checkSurfaces are what a check page's Examples show: --once's text
	// and JSON, the metric series and the journal entry.
	checkSurfaces = []string{"`mountwatchd --once` (text)", "`mountwatchd --once --output json`", "mountwatchd_problem{", "MESSAGE_ID="}
)

func readDoc(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(top, rel))
	if err != nil {
		t.Errorf("%s: %v", rel, err)
		return ""
	}
	return string(b)
}

// missingSections lists the "## " sections of want that page lacks.
func missingSections(page string, want []string) []string {
	var miss []string
	for _, s := range want {
		if !regexp.MustCompile(`(?m)^## ` + regexp.QuoteMeta(s) + `\s*$`).MatchString(page) {
			miss = append(miss, s)
		}
	}
	return miss
}

// Every check has a runbook page with every section and an example of
// every surface, README's table links it and docs/journal.md lists its
// MESSAGE_ID; every alert has a runbook_url to a page that exists and has
// the runbook sections (a check's alerts, their check's page); the
// dashboard links each check to its page.
func TestRunbooks(t *testing.T) {
	readme := readDoc(t, "README.md")
	journal := readDoc(t, "docs/journal.md")
	for _, d := range check.Declared() {
		id := string(d.ID)
		page := readDoc(t, "docs/checks/"+id+".md")
		if page == "" {
			continue
		}
		if miss := missingSections(page, checkSections); len(miss) > 0 {
			t.Errorf("docs/checks/%s.md lacks the sections %q", id, miss)
		}
		if _, ex, ok := strings.Cut(page, "\n## Examples"); ok {
			for _, s := range checkSurfaces {
				if !strings.Contains(ex, s) {
					t.Errorf("docs/checks/%s.md: Examples show no %s", id, s)
				}
			}
		}
		if !strings.Contains(page, d.MessageID) {
			t.Errorf("docs/checks/%s.md does not give its MESSAGE_ID %s", id, d.MessageID)
		}
		if !regexp.MustCompile("(?m)^\\| `" + id + "` \\|.*\\]\\(docs/checks/" + id + "\\.md\\)").MatchString(readme) {
			t.Errorf("README.md: the row of %s does not link docs/checks/%s.md", id, id)
		}
		if !strings.Contains(journal, "| `"+id+"` | `"+d.MessageID+"` |") {
			t.Errorf("docs/journal.md: no MESSAGE_ID row | `%s` | `%s` |", id, d.MessageID)
		}
	}

	checkOf := regexp.MustCompile(`check="(\w+)"`)
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			url := r.Annotations["runbook_url"]
			rel, ok := strings.CutPrefix(url, repoDocs)
			if !ok {
				t.Errorf("alert %s: runbook_url %q is not under %s", r.Alert, url, repoDocs)
				continue
			}
			want := alertSections
			if m := checkOf.FindStringSubmatch(r.Expr); m != nil {
				if rel != "checks/"+m[1]+".md" {
					t.Errorf("alert %s on check %s links %s, not its check's page", r.Alert, m[1], rel)
				}
				want = checkSections
			}
			if page := readDoc(t, "docs/"+rel); page != "" {
				if miss := missingSections(page, want); len(miss) > 0 {
					t.Errorf("alert %s: docs/%s lacks the sections %q", r.Alert, rel, miss)
				}
			}
		}
	}

	var dash struct {
		Panels []struct {
			Title       string          `json:"title"`
			FieldConfig json.RawMessage `json:"fieldConfig"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(readDoc(t, "packaging/prometheus/mountwatchd-dashboard.json")), &dash); err != nil {
		t.Fatal(err)
	}
	links := 0
	for _, p := range dash.Panels {
		for _, v := range []string{"${__value.raw}", "${__field.labels.check}"} {
			if strings.Contains(string(p.FieldConfig), repoDocs+"checks/"+v+".md") {
				links++
			}
		}
	}
	if links < 2 {
		t.Errorf("the dashboard links checks to their pages in %d panels, want the current problems table and the problems by check", links)
	}
}

// Every relative link in the README, CONTRIBUTING.md, BENCHMARKS.md, the
// systemd, packaging and chart READMEs and docs/ leads to a file that
// exists, and each #anchor to a heading in it.
func TestDocLinksResolve(t *testing.T) {
	files := []string{"README.md", "CONTRIBUTING.md", "BENCHMARKS.md", "systemd/README.md", "packaging/README.md", "packaging/helm/mountwatchd/README.md"}
	err := filepath.WalkDir(filepath.Join(top, "docs"), func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && strings.HasSuffix(p, ".md") {
			rel, _ := filepath.Rel(top, p)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile(`\]\(([^)#\s]*)(#[^)]*)?\)`)
	n := 0
	for _, f := range files {
		for _, m := range link.FindAllStringSubmatch(readDoc(t, f), -1) {
			target := m[1]
			if target == "" {
				if frag := strings.TrimPrefix(m[2], "#"); frag != "" && !headings(t, filepath.Join(top, f))[frag] {
					t.Errorf("%s links %s: no such heading there", f, m[2])
				}
				continue
			}
			if strings.Contains(target, "://") {
				continue
			}
			n++
			path := filepath.Join(top, filepath.Dir(f), target)
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s links %s, which does not exist", f, target)
				continue
			}
			if frag := strings.TrimPrefix(m[2], "#"); frag != "" && strings.HasSuffix(target, ".md") && !headings(t, path)[frag] {
				t.Errorf("%s links %s%s: no such heading there", f, target, m[2])
			}
		}
	}
	if n < 50 {
		t.Errorf("only %d relative links found: is the pattern right?", n)
	}
}

// The chart's runbookBaseURL moves every alert's runbook_url and the
// dashboard's check links to a mirror of docs/.
func TestRunbookBaseURLValue(t *testing.T) {
	const mirror = "https://wiki.example/mountwatchd/docs/"
	o := decodeObjects(t, template(t, "mountwatchd", append(allOptions, "runbookBaseURL="+strings.TrimSuffix(mirror, "/"))...))
	if len(o.rules) != 1 {
		t.Fatalf("%d PrometheusRules", len(o.rules))
	}
	n := 0
	for _, g := range o.rules[0].Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if url := r.Annotations["runbook_url"]; !strings.HasPrefix(url, mirror) || !strings.HasSuffix(url, ".md") {
				t.Errorf("alert %s: runbook_url %q, want it under %s", r.Alert, url, mirror)
			}
		}
	}
	if n == 0 {
		t.Error("no alerts rendered")
	}
	dash := o.configMap(t, "mountwatchd-dashboard").Data["mountwatchd.json"]
	if strings.Contains(dash, repoDocs) || !strings.Contains(dash, mirror+"checks/${__value.raw}.md") {
		t.Errorf("the dashboard's check links do not point under %s", mirror)
	}
}

// headings are the anchors GitHub gives the headings of a Markdown file:
// lower case, punctuation but '-' and '_' dropped, spaces as '-'.
func headings(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	fence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			fence = !fence
		}
		h, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if fence || !ok || !strings.HasPrefix(line, "#") {
			continue
		}
		var a strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case r == ' ':
				a.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				a.WriteRune(r)
			}
		}
		anchors[a.String()] = true
	}
	return anchors
}
