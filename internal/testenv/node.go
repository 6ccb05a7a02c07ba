package testenv

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// Node is a shell in a mount namespace of its own, the stand-in for a node
// as a DaemonSet sees it: its table is /proc/<PID>/mountinfo and its files
// /proc/<PID>/root/... . Nothing it mounts is visible to the test.
type Node struct {
	PID   int
	t     testing.TB
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// NewNode starts the shell, runs setup (with set -e) in it and waits for it.
// The shell is killed when the test ends, and its namespace goes with it.
func NewNode(t testing.TB, setup string) *Node {
	t.Helper()
	return newNode(t, setup, &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS})
}

// NewInitNode is NewNode with a PID namespace of its own too, in which the
// shell is PID 1, like a node's init; setup runs after /proc is mounted
// afresh for it. A container that joins that PID namespace (a DaemonSet
// with hostPID) sees the node's init as PID 1, so --target.pid=1 works there
// as on a node. Node.PID is the shell's PID in the test's namespace. When
// the shell ends, the kernel kills everything in its PID namespace.
func NewInitNode(t testing.TB, setup string) *Node {
	t.Helper()
	return newNode(t, "mount -t proc proc /proc\n"+setup,
		&syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Unshareflags: syscall.CLONE_NEWNS})
}

func newNode(t testing.TB, setup string, attr *syscall.SysProcAttr) *Node {
	t.Helper()
	cmd := exec.Command("sh", "-c", "set -e\n"+setup+"\necho ready\n"+
		`while read -r line; do if eval "$line"; then echo done; else echo failed; fi; done`)
	cmd.SysProcAttr = attr
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	n := &Node{PID: cmd.Process.Pid, t: t, stdin: stdin, out: bufio.NewScanner(stdout)}
	n.expect("ready", "setup")
	return n
}

// Run runs a shell command in the node's namespace and fails the test if it
// fails.
func (n *Node) Run(command string) {
	n.t.Helper()
	if _, err := fmt.Fprintln(n.stdin, command); err != nil {
		n.t.Fatal(err)
	}
	n.expect("done", command)
}

func (n *Node) expect(want, what string) {
	n.t.Helper()
	if !n.out.Scan() || n.out.Text() != want {
		n.t.Fatalf("node namespace: %s: got %q, want %q", what, n.out.Text(), want)
	}
}
