package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SSHFS is an sshfs mount of a directory served by a loopback sshd of the
// test's own: a network FUSE whose server (sshfs) stays alive while what is
// behind it can be frozen (Stall) as a remote host that hangs.
type SSHFS struct {
	t     testing.TB
	Dir   string // the mount point
	Sshfs *os.Process
	sshd  *exec.Cmd
}

// NewSSHFS serves src with sshd on a free loopback port and mounts it on
// dir with sshfs (fstype fuse.sshfs). Everything is stopped and unmounted
// when the test ends; a stalled sshd is resumed first.
func NewSSHFS(t testing.TB, src, dir string) *SSHFS {
	t.Helper()
	RequireRoot(t)
	sshdBin := "/usr/sbin/sshd"
	_, err := os.Stat(sshdBin)
	Require(t, err == nil, "%s (apt package openssh-server)", sshdBin)
	sshfs := RequireCommand(t, "sshfs", "sshfs")
	keygen := RequireCommand(t, "ssh-keygen", "openssh-client")

	keys := t.TempDir()
	for _, k := range []string{"host", "user"} {
		Run(t, keygen, "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(keys, k))
	}
	auth := filepath.Join(keys, "authorized_keys")
	pub, err := os.ReadFile(filepath.Join(keys, "user.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(auth, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // sshd's privilege separation directory
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &SSHFS{t: t, Dir: dir}
	var port string
	for attempt := 0; ; attempt++ {
		_, port, _ = net.SplitHostPort(FreeLoopbackAddr(t))
		s.sshd = exec.Command(sshdBin, "-D", "-e", "-f", "/dev/null", "-p", port,
			"-o", "ListenAddress=127.0.0.1", "-o", "HostKey="+filepath.Join(keys, "host"),
			"-o", "AuthorizedKeysFile="+auth, "-o", "PermitRootLogin=prohibit-password",
			"-o", "StrictModes=no", "-o", "UsePAM=no", "-o", "PidFile=none",
			"-o", "Subsystem=sftp internal-sftp")
		log := &SyncBuffer{}
		s.sshd.Stdout, s.sshd.Stderr = log, log
		if err := s.sshd.Start(); err != nil {
			t.Fatal(err)
		}
		up := false
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
				c.Close()
				up = true
				break
			}
			if s.sshd.ProcessState != nil {
				break
			}
		}
		if up {
			break
		}
		_ = s.sshd.Process.Kill()
		_ = s.sshd.Wait()
		if attempt == 2 {
			t.Fatalf("sshd did not listen on 127.0.0.1:%s:\n%s", port, log.String())
		}
	}
	t.Cleanup(func() {
		s.Resume()
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		if s.Sshfs != nil {
			_ = s.Sshfs.Kill()
			_, _ = s.Sshfs.Wait()
		}
		for _, pid := range Descendants(s.sshd.Process.Pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = s.sshd.Process.Kill()
		_ = s.sshd.Wait()
	})
	// -f: sshfs stays in the foreground, so that its process is ours.
	cmd := exec.Command(sshfs, "-f", "-o", "IdentityFile="+filepath.Join(keys, "user")+",Port="+port+
		",StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,allow_other,BatchMode=yes",
		"root@127.0.0.1:"+src, dir)
	log := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Sshfs = cmd.Process
	WaitUntil(t, 20*time.Second, "sshfs mounted on "+dir, func() bool {
		var st syscall.Statfs_t
		return syscall.Statfs(dir, &st) == nil && st.Type == 0x65735546 // FUSE_SUPER_MAGIC
	})
	return s
}

// Stall freezes the remote end: SIGSTOP of the sshd processes below the
// listener (the per-connection sshd and its session, the SFTP server).
// sshfs stays alive, reads each request and waits for an answer that does
// not come, so a task using the mount sleeps in request_wait_answer.
func (s *SSHFS) Stall() {
	s.t.Helper()
	pids := Descendants(s.sshd.Process.Pid)
	if len(pids) == 0 {
		s.t.Fatal("sshd has no session process to stop")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			s.t.Fatal(err)
		}
	}
}

// Resume undoes Stall.
func (s *SSHFS) Resume() {
	for _, pid := range Descendants(s.sshd.Process.Pid) {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
}

// Descendants are the PIDs of every process below pid, from /proc/*/stat.
func Descendants(pid int) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 {
			pp, _ := strconv.Atoi(fields[1])
			parent[p] = pp
		}
	}
	var out []int
	for p := range parent {
		for a := parent[p]; a > 1; a = parent[a] {
			if a == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}
