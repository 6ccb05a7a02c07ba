package packaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// top is the repository root, as the tests run in packaging/.
const top = ".."

// staticBinary builds mountwatchd as the package and the image carry it:
// CGO_ENABLED=0.
func staticBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mountwatchd")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/mountwatchd")
	cmd.Dir = top
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) firstLine() string { return strings.SplitN(r.stdout, "\n", 2)[0] }

// run runs a command with a deadline and returns its exit code and output.
func run(t *testing.T, timeout time.Duration, env []string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %v did not return within %s", name, args, timeout)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, stdout.String(), stderr.String()}
}

// inNode runs a shell command in the node's namespace and returns its exit
// code and combined output (Node.Run only says done or failed).
func inNode(t *testing.T, node *testenv.Node, dir, command string) (int, string) {
	t.Helper()
	out, rc := filepath.Join(dir, "cmd.out"), filepath.Join(dir, "cmd.rc")
	node.Run(fmt.Sprintf("{ %s ; } </dev/null >%s 2>&1; echo $? >%s", command, out, rc))
	b, err := os.ReadFile(rc)
	if err != nil {
		t.Fatal(err)
	}
	var code int
	if _, err := fmt.Sscan(string(b), &code); err != nil {
		t.Fatalf("exit code of %q: %q", command, b)
	}
	o, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return code, string(o)
}

func get(url string) (int, string) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// cleanEnv is the environment without systemd's variables.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		switch k {
		case "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "LISTEN_FDS", "LISTEN_PID", "NODE_NAME", "GOMEMLIMIT":
			continue
		}
		env = append(env, e)
	}
	return append(env, extra...)
}

// hasSeries reports whether the exposition body has a line of series's
// metric carrying each complete label pair series gives (name{a="x",b="y",
// closed or not), whatever other labels it has.
func hasSeries(body, series string) bool {
	name, want, _ := strings.Cut(series, "{")
	wanted := testenv.ExpositionLabels(want)
	for _, l := range strings.Split(body, "\n") {
		if n, rest, ok := strings.Cut(l, "{"); ok && n == name && testenv.HasLabels(testenv.ExpositionLabels(rest), wanted) {
			return true
		}
	}
	return false
}
