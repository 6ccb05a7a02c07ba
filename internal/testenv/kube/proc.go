package kube

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is one daemon of the cluster, its output in a file of the cluster's
// directory.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func (c *Cluster) start(name string, args ...string) *proc {
	c.t.Helper()
	p := &proc{name: filepath.Base(name), log: filepath.Join(c.Dir, filepath.Base(name)+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		c.t.Fatal(err)
	}
	p.cmd = exec.Command(name, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	// A process group of its own: its children (a FUSE server of the CSI
	// plugin, say) are signalled apart from it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); f.Close(); close(p.done) }()
	c.procs = append(c.procs, p)
	return p
}

// stop ends a daemon: SIGTERM, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail is the end of a daemon's log, for a failure message.
func (p *proc) tail(n int) string {
	data, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("--- %s (%s), last %d lines:\n%s", p.name, p.log, len(lines), strings.Join(lines, "\n"))
}

// waitFor polls cond until it holds, failing the test after timeout with
// the named daemons' logs.
func (c *Cluster) waitFor(timeout time.Duration, what string, cond func() bool, logs ...*proc) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		for _, p := range logs {
			if p.exited() {
				c.t.Fatalf("%s exited while waiting for %s\n%s", p.name, what, p.tail(40))
			}
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, p := range logs {
				b.WriteString(p.tail(40) + "\n")
			}
			c.t.Fatalf("no %s within %v\n%s", what, timeout, b.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
