package check

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"go.yaml.in/yaml/v2"
)

// The catalogue is the declared checks in their documented order, and every
// declaration is complete: what --once, the daemon, the journal and the
// metrics are built from.
func TestCatalogueFollowsDeclarations(t *testing.T) {
	var ids []finding.ID
	for _, d := range Declared() {
		if err := validateAlone(d); err != nil {
			t.Error(err)
		}
		ids = append(ids, d.ID)
	}
	want := []finding.ID{DeletedRoot, StaleMount, HungMount, ShadowedMount, OpaquePropagation, StrayOverlayXattr}
	for _, id := range want {
		if !slices.Contains(ids, id) {
			t.Errorf("%s is not declared", id)
		}
	}
	var old []finding.ID // the catalogue order of the checks that existed before declarations
	for _, id := range ids {
		if slices.Contains(want, id) {
			old = append(old, id)
		}
	}
	if !slices.Equal(old, want) {
		t.Errorf("catalogue order %v, want %v (reports list checks in this order)", old, want)
	}
	for i, c := range Catalogue(&Config{}) {
		d := c.Decl()
		if d.ID != ids[i] {
			t.Errorf("catalogue check %d is %s, want %s", i, d.ID, ids[i])
		}
		if reg, _ := lookup(d.ID); reg.MessageID != d.MessageID || reg.Kind != d.Kind || reg.Needs != d.Needs {
			t.Errorf("%s: its Decl() differs from the one it registered", d.ID)
		}
	}
	a, b := Catalogue(nil), Catalogue(nil)
	for i := range a {
		if p, ok := a[i].(*OpaquePropagationCheck); ok && p == b[i].(*OpaquePropagationCheck) {
			t.Error("two catalogues share a scanning check's cursor")
		}
	}
}

// validateAlone is validate without the collision checks (the registry
// holds d itself).
func validateAlone(d Decl) error {
	registryMu.Lock()
	saved := registry
	registry = map[finding.ID]Decl{}
	registryMu.Unlock()
	defer func() {
		registryMu.Lock()
		registry = saved
		registryMu.Unlock()
	}()
	return validate(d)
}

// Register refuses a declaration that collides with another or is
// incomplete, so a broken check never starts.
func TestRegisterRefusesBrokenDeclarations(t *testing.T) {
	d, _ := lookup(DeletedRoot)
	for name, bad := range map[string]Decl{
		"same id":         d,
		"same message id": {ID: "x_new", MessageID: d.MessageID, Severities: d.Severities, New: d.New},
		"bad message id":  {ID: "x_new", MessageID: "FAA7", Severities: d.Severities, New: d.New},
		"no severities":   {ID: "x_new", MessageID: "00000000000000000000000000000000", New: d.New},
		"no constructor":  {ID: "x_new", MessageID: "00000000000000000000000000000000", Severities: d.Severities},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: registered", name)
				}
			}()
			Register(bad)
		}()
	}
	if _, ok := lookup("x_new"); ok {
		t.Error("a refused declaration is in the registry")
	}
}

const repo = "../../"

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(repo + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// README.md's table of checks has a row for every declared check with its
// kind, and docs/journal.md's MESSAGE_ID table the check's MESSAGE_ID.
func TestEveryCheckInREADME(t *testing.T) {
	readme := readRepoFile(t, "README.md")
	journal := readRepoFile(t, "docs/journal.md")
	for _, d := range Declared() {
		row := regexp.MustCompile("(?m)^\\| `" + string(d.ID) + "` \\| [^|]+ \\| " + d.Kind.String() + " \\| .+\\|$")
		if !row.MatchString(readme) {
			t.Errorf("README.md: no row | `%s` | severity | %s | what it finds | in the table of checks", d.ID, d.Kind)
		}
		if !strings.Contains(journal, "| `"+string(d.ID)+"` | `"+d.MessageID+"` |") {
			t.Errorf("docs/journal.md: MESSAGE_ID table lacks | `%s` | `%s` |", d.ID, d.MessageID)
		}
	}
}

type ruleGroups struct {
	Groups []struct {
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// Every declared check has an alert for each of its severities in the
// shipped alert rules (the file, its Helm copy and the PrometheusRule),
// and a promtool test that fires it.
func TestEveryCheckAlerted(t *testing.T) {
	files := map[string]ruleGroups{}
	for _, name := range []string{"packaging/prometheus/mountwatchd.rules.yml", "packaging/helm/mountwatchd/files/mountwatchd.rules.yml"} {
		var g ruleGroups
		if err := yaml.Unmarshal([]byte(readRepoFile(t, name)), &g); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		files[name] = g
	}
	var cr struct {
		Spec ruleGroups `yaml:"spec"`
	}
	const crName = "packaging/prometheus/prometheusrule.yaml"
	if err := yaml.Unmarshal([]byte(readRepoFile(t, crName)), &cr); err != nil {
		t.Fatalf("%s: %v", crName, err)
	}
	files[crName] = cr.Spec
	tests := readRepoFile(t, "packaging/prometheus/mountwatchd.rules.test.yml")
	for _, d := range Declared() {
		for name, g := range files {
			for _, sev := range d.Severities {
				sel := `check="` + string(d.ID) + `",severity="` + string(sev) + `"`
				found := false
				for _, gr := range g.Groups {
					for _, r := range gr.Rules {
						found = found || (r.Alert != "" && strings.Contains(r.Expr, sel))
					}
				}
				if !found {
					t.Errorf("%s: no alert on mountwatchd_problem{%s}", name, sel)
				}
			}
		}
		if !strings.Contains(tests, "check: "+string(d.ID)+"\n") {
			t.Errorf("mountwatchd.rules.test.yml: no promtool test expects an alert with check: %s", d.ID)
		}
	}
}

// The dashboard shows every declared check: its problem panels group by
// the check label, and no query selects a set of checks that leaves a
// declared one out.
func TestDashboardCoversEveryCheck(t *testing.T) {
	for _, name := range []string{"packaging/prometheus/mountwatchd-dashboard.json", "packaging/helm/mountwatchd/files/mountwatchd-dashboard.json"} {
		dash := strings.ReplaceAll(readRepoFile(t, name), `\"`, `"`)
		if !strings.Contains(dash, "by (instance, check)") {
			t.Errorf("%s: no panel of problems by check", name)
		}
		for _, m := range regexp.MustCompile(`check(=~|=|!=|!~)"([^"]*)"`).FindAllStringSubmatch(dash, -1) {
			re, err := regexp.Compile("^(?:" + m[2] + ")$")
			if err != nil {
				t.Errorf("%s: matcher %s: %v", name, m[0], err)
				continue
			}
			for _, d := range Declared() {
				in := re.MatchString(string(d.ID))
				if in == (m[1] == "!=" || m[1] == "!~") {
					t.Errorf("%s: matcher %s leaves %s out", name, m[0], d.ID)
				}
			}
		}
	}
}

// lookup is the registered declaration of id.
func lookup(id finding.ID) (Decl, bool) {
	for _, d := range Declared() {
		if d.ID == id {
			return d, true
		}
	}
	return Decl{}, false
}
