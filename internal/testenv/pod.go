package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/kubecgroup"
)

// CgroupRoot is where the machine's cgroup filesystems are mounted.
const CgroupRoot = "/sys/fs/cgroup"

// PodCgroup is a stand-in for a running pod as kubelet leaves it in the
// node's cgroups: a process (sleep) in a container cgroup below a pod
// cgroup named the way kubelet's cgroup driver names it, in the v2
// hierarchy and in a v1 controller where the machine has them. The process
// is a shell that writes files on request (WriteFile). The cgroup
// tree is the host's (a mount namespace does not isolate it): Stop ends the
// process, Remove removes every cgroup the stand-in made, and both run when
// the test ends.
type PodCgroup struct {
	UID string
	// Dirs are the pod cgroups made, as absolute paths.
	Dirs []string

	t       testing.TB
	made    []string // every directory made, parents first
	proc    *exec.Cmd
	stdin   io.WriteCloser
	stdout  *bufio.Reader
	stopped sync.Once
	removed sync.Once
}

// PodHierarchies are the cgroup hierarchies of this machine a stand-in pod
// is made in: the v2 one (the root on a pure v2 machine, unified/ on a
// hybrid one) and the v1 pids controller when there is one.
func PodHierarchies(t testing.TB) []string {
	t.Helper()
	var out []string
	var st syscall.Statfs_t
	if syscall.Statfs(CgroupRoot, &st) == nil && st.Type == 0x63677270 {
		return []string{CgroupRoot}
	}
	for _, h := range []string{"unified", "pids"} {
		p := filepath.Join(CgroupRoot, h)
		if syscall.Statfs(p, &st) == nil && (st.Type == 0x63677270 || st.Type == 0x27e0eb) {
			out = append(out, p)
		}
	}
	Require(t, len(out) > 0, "no cgroup v2 or v1 pids hierarchy under %s", CgroupRoot)
	return out
}

// StartPodCgroup makes the stand-in pod in the given hierarchies (see
// PodHierarchies) and starts its process there. It requires root.
func StartPodCgroup(t testing.TB, hierarchies []string, driver, qos, uid string) *PodCgroup {
	t.Helper()
	RequireRoot(t)
	p := &PodCgroup{UID: uid, t: t}
	t.Cleanup(p.Remove)
	rel := kubecgroup.PodPath(driver, qos, uid)
	container := ContainerPath(driver, qos, uid, "0123456789abcdef")
	var leaves []string
	for _, h := range hierarchies {
		p.Dirs = append(p.Dirs, filepath.Join(h, rel))
		leaf := filepath.Join(h, container)
		p.mkdirAll(h, leaf)
		leaves = append(leaves, leaf)
	}
	// The pod's process writes the files WriteFile names, from inside
	// the pod's cgroup.
	p.proc = exec.Command("sh", "-c", `while read -r f; do if echo written-by-the-pod >"$f"; then echo ok; else echo failed; fi; done`)
	var err error
	if p.stdin, err = p.proc.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := p.proc.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdout = bufio.NewReader(out)
	if err := p.proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	for _, leaf := range leaves {
		if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(p.proc.Process.Pid)), 0o644); err != nil {
			t.Fatalf("move the stand-in pod's process into %s: %v", leaf, err)
		}
	}
	return p
}

// mkdirAll makes dir below the hierarchy h, remembering what it made.
func (p *PodCgroup) mkdirAll(h, dir string) {
	rel, _ := filepath.Rel(h, dir)
	cur := h
	for _, part := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, 0o755); err == nil {
			p.made = append(p.made, cur)
		} else if !errors.Is(err, fs.ErrExist) {
			p.t.Fatalf("make cgroup %s: %v", cur, err)
		}
	}
}

// WriteFile has the pod's process write a line into file (created or
// truncated), as a container writing into its volume.
func (p *PodCgroup) WriteFile(file string) {
	p.t.Helper()
	if _, err := fmt.Fprintln(p.stdin, file); err != nil {
		p.t.Fatal(err)
	}
	if line, err := p.stdout.ReadString('\n'); err != nil || line != "ok\n" {
		p.t.Fatalf("the stand-in pod could not write %s: %q %v", file, line, err)
	}
}

// PID is the stand-in pod's process.
func (p *PodCgroup) PID() int { return p.proc.Process.Pid }

// Stop ends the pod's process (its cgroups stay, empty).
func (p *PodCgroup) Stop() {
	p.stopped.Do(func() {
		if p.proc != nil {
			_ = p.stdin.Close()
			_ = p.proc.Process.Kill()
			_ = p.proc.Wait()
		}
	})
}

// Remove stops the process and removes every cgroup directory the stand-in
// made, deepest first. A parent another test still uses (EBUSY) stays.
func (p *PodCgroup) Remove() {
	p.Stop()
	p.removed.Do(func() {
		made := slices.Clone(p.made)
		slices.SortFunc(made, func(a, b string) int { return len(b) - len(a) })
		for _, d := range made {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.EBUSY) {
				p.t.Errorf("remove cgroup %s: %v", d, err)
			}
		}
	})
}

// String names the stand-in for test messages.
func (p *PodCgroup) String() string { return fmt.Sprintf("pod %s (%v)", p.UID, p.Dirs) }
