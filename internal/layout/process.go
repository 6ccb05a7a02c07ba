package layout

import (
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/procstat"
	"golang.org/x/sys/unix"
)

// Found is what a running process (or its config file) says a directory is.
type Found struct {
	Path     string
	Source   Source
	Evidence string
}

// ProcessEvidence is what the running kubelet and containerd say.
type ProcessEvidence struct {
	KubeletRoot    Found
	ContainerdRoot Found
	// PodLogs is podLogsDir from kubelet's config file (--config).
	PodLogs Found
	// Notes say why a process was not asked or not believed.
	Notes []string
}

// Procs reads kubelet's and containerd's own settings from the processes
// of a live node.
type Procs struct {
	// Procfs is where the inspected PID namespace's procfs is (/proc).
	Procfs string
	// TargetPID is the process whose mount namespace is inspected (0: ours).
	// A kubelet or containerd in another mount namespace (a kind node's) is
	// not this node's and is left out.
	TargetPID int
	// Path maps a path of the inspected namespace to one this process can
	// open (mounts.HostFS.Path).
	Path func(string) string
	// MayHang reports whether looking up a path of the inspected namespace
	// crosses a mount that may hang (FUSE, network); such a config file is
	// not read.
	MayHang func(string) bool
	// Timeout bounds the read of one process's command line (default 1s).
	Timeout time.Duration

	// inflight are the PIDs whose command line read has not returned: a
	// second is never started (a blocked read pins a thread). The
	// ProcessCache's, so across reads; else this Read's own.
	inflight *sync.Map
}

const (
	maxCmdline    = 64 << 10
	maxConfig     = 1 << 20
	maxProcs      = 1 << 16
	kubeletComm   = "kubelet"
	containerComm = "containerd"
	// DefaultContainerdConfig is where containerd reads its config without --config.
	DefaultContainerdConfig = "/etc/containerd/config.toml"
)

// Read looks for kubelet and containerd processes by their comm in
// /proc/<pid>/stat and reads a command line only of a process that is not
// in state D: reading cmdline takes the process's memory map lock, which a
// task stuck in a page fault on a hung FUSE mount holds. The read is also
// bounded by Timeout.
func (p Procs) Read() ProcessEvidence {
	var ev ProcessEvidence
	if p.Procfs == "" {
		p.Procfs = "/proc"
	}
	if p.Timeout <= 0 {
		p.Timeout = time.Second
	}
	if p.inflight == nil {
		p.inflight = new(sync.Map)
	}
	d, err := os.Open(p.Procfs)
	if err != nil {
		ev.Notes = append(ev.Notes, "processes not read: "+err.Error())
		return ev
	}
	names, _ := d.Readdirnames(maxProcs)
	d.Close()
	target := "self"
	if p.TargetPID != 0 {
		target = strconv.Itoa(p.TargetPID)
	}
	targetNS, _ := os.Readlink(path.Join(p.Procfs, target, "ns", "mnt"))
	var kubelets, containerds, podLogs []Found
	for _, n := range names {
		comm, f, ok, logs := p.inspect(n, targetNS, &ev.Notes)
		if logs.Path != "" {
			podLogs = append(podLogs, logs)
		}
		switch {
		case !ok:
		case comm == kubeletComm:
			kubelets = append(kubelets, f)
		case comm == containerComm:
			containerds = append(containerds, f)
		}
	}
	ev.KubeletRoot = agree(kubelets, "kubelet", &ev.Notes)
	ev.ContainerdRoot = agree(containerds, "containerd", &ev.Notes)
	ev.PodLogs = agree(podLogs, "kubelet config", &ev.Notes)
	return ev
}

// inspect looks at process n (a /proc entry): when it is a kubelet or a
// containerd in the inspected mount namespace that is not in state D, what
// its command line (or containerd's config) says of its root, and for a
// kubelet what its config file says of the pod log directory.
func (p Procs) inspect(n, targetNS string, notes *[]string) (comm string, root Found, ok bool, podLogs Found) {
	pid, err := strconv.Atoi(n)
	if err != nil || pid <= 0 {
		return "", Found{}, false, Found{}
	}
	stat, err := readSmall(path.Join(p.Procfs, n, "stat"), 4096)
	if err != nil {
		return "", Found{}, false, Found{}
	}
	comm, state, parsed := ParseStat(stat)
	if !parsed || (comm != kubeletComm && comm != containerComm) {
		return "", Found{}, false, Found{}
	}
	if state == 'D' || state == 'Z' || state == 'X' {
		*notes = append(*notes, fmt.Sprintf("%s pid %d is in state %c: its command line was not read", comm, pid, state))
		return "", Found{}, false, Found{}
	}
	if targetNS != "" {
		if ns, err := os.Readlink(path.Join(p.Procfs, n, "ns", "mnt")); err == nil && ns != targetNS {
			*notes = append(*notes, fmt.Sprintf("%s pid %d is in another mount namespace: left out", comm, pid))
			return "", Found{}, false, Found{}
		}
	}
	args, err := p.cmdline(pid)
	if err != nil {
		*notes = append(*notes, fmt.Sprintf("%s pid %d: %v", comm, pid, err))
		return "", Found{}, false, Found{}
	}
	if comm == containerComm {
		f, ok := p.containerd(pid, args)
		return comm, f, ok, Found{}
	}
	podLogs = p.kubeletPodLogs(pid, args)
	dir, ok := FlagValue(args, "--root-dir")
	if !ok || !path.IsAbs(dir) {
		return comm, Found{}, false, podLogs
	}
	return comm, Found{Path: path.Clean(dir), Source: FromProcess, Evidence: fmt.Sprintf("kubelet pid %d --root-dir", pid)}, true, podLogs
}

// agree returns the one directory all processes found name, or nothing
// (with a note) when they disagree.
func agree(fs []Found, what string, notes *[]string) Found {
	if len(fs) == 0 {
		return Found{}
	}
	for _, f := range fs[1:] {
		if f.Path != fs[0].Path {
			*notes = append(*notes, fmt.Sprintf("%d %s processes name different directories (%s, %s): left to the mount table", len(fs), what, fs[0].Path, f.Path))
			return Found{}
		}
	}
	return fs[0]
}

// containerd reads containerd's root from its --root flag or, failing
// that, from the top-level root key of its config file.
func (p Procs) containerd(pid int, args []string) (Found, bool) {
	if dir, ok := FlagValue(args, "--root"); ok && path.IsAbs(dir) {
		return Found{Path: path.Clean(dir), Source: FromProcess, Evidence: fmt.Sprintf("containerd pid %d --root", pid)}, true
	}
	cfg, given := FlagValue(args, "--config")
	if !given {
		cfg, given = FlagValue(args, "-c")
	}
	if !given {
		cfg = DefaultContainerdConfig
	}
	if !path.IsAbs(cfg) || p.Path == nil || (p.MayHang != nil && p.MayHang(path.Clean(cfg))) {
		return Found{}, false
	}
	data, err := readSmall(p.Path(path.Clean(cfg)), maxConfig)
	if err != nil {
		return Found{}, false
	}
	if root, ok := ContainerdConfigRoot(data); ok && path.IsAbs(root) {
		return Found{Path: path.Clean(root), Source: FromConfig, Evidence: fmt.Sprintf("containerd pid %d, root in %s", pid, cfg)}, true
	}
	return Found{}, false
}

// kubeletPodLogs reads podLogsDir from the kubelet's config file (its
// --config flag), unless reaching the file may hang.
func (p Procs) kubeletPodLogs(pid int, args []string) Found {
	cfg, given := FlagValue(args, "--config")
	if !given || !path.IsAbs(cfg) || p.Path == nil || (p.MayHang != nil && p.MayHang(path.Clean(cfg))) {
		return Found{}
	}
	data, err := readSmall(p.Path(path.Clean(cfg)), maxConfig)
	if err != nil {
		return Found{}
	}
	dir, ok := KubeletConfigPodLogsDir(data)
	if !ok {
		return Found{}
	}
	return Found{Path: dir, Source: FromConfig, Evidence: fmt.Sprintf("kubelet pid %d, podLogsDir in %s", pid, cfg)}
}

// cmdline reads /proc/<pid>/cmdline, waiting at most Timeout.
func (p Procs) cmdline(pid int) ([]string, error) {
	if _, busy := p.inflight.LoadOrStore(pid, true); busy {
		return nil, fmt.Errorf("an earlier read of its command line has not returned")
	}
	type result struct {
		data []byte
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		defer p.inflight.Delete(pid)
		data, err := readSmall(path.Join(p.Procfs, strconv.Itoa(pid), "cmdline"), maxCmdline)
		ch <- result{data, err}
	}()
	t := time.NewTimer(p.Timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		return strings.Split(strings.TrimRight(string(r.data), "\x00"), "\x00"), nil
	case <-t.C:
		return nil, fmt.Errorf("reading its command line took more than %s", p.Timeout)
	}
}

// readSmall reads at most limit bytes of a regular or proc file, opened
// non-blocking (a FIFO in its place cannot hang the read).
func readSmall(name string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

// ParseStat reads comm and state out of /proc/<pid>/stat (procstat.Head).
func ParseStat(data []byte) (comm string, state byte, ok bool) { return procstat.Head(data) }

// FlagValue returns the value of a command line flag given as "--name=v"
// or "--name v" (the last one given wins, as with Go's and pflag's
// parsers).
func FlagValue(args []string, name string) (string, bool) {
	val, found := "", false
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			val, found = v, true
		} else if a == name && i+1 < len(args) {
			val, found = args[i+1], true
			i++
		}
	}
	return val, found
}

// ContainerdConfigRoot returns the top-level root key of a containerd
// config.toml (before its first table header), quoted with " or '.
func ContainerdConfigRoot(data []byte) (string, bool) {
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			return "", false // tables begin: no top-level root
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(key) != "root" {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) < 2 {
			return "", false
		}
		q := val[0]
		if q != '"' && q != '\'' {
			return "", false
		}
		end := strings.IndexByte(val[1:], q)
		if end < 0 {
			return "", false
		}
		return val[1 : 1+end], true
	}
	return "", false
}

// processTTL is how long what the processes said is reused: the daemon
// reads the mount table up to ten times a second during a burst of
// changes, and kubelet's and containerd's flags change only with a
// restart.
const processTTL = 30 * time.Second

// ProcessCache owns what one run of mountwatchd (the daemon, or one --once)
// learns from the inspected node's running processes: what kubelet and
// containerd said (Procs.Read), reused for 30 seconds, and the command
// line reads that have not returned, never started twice. The run makes
// one (NewProcessCache) and hands it on in mounts.Host.Processes; there is
// no package-level cache.
type ProcessCache struct {
	mu       sync.Mutex
	key      string
	at       time.Time
	ev       ProcessEvidence
	inflight sync.Map
}

// NewProcessCache returns an empty cache.
func NewProcessCache() *ProcessCache { return &ProcessCache{} }

// Read is p.Read, reusing a result younger than 30 seconds for the same
// procfs and target. A nil cache reads afresh every time.
func (c *ProcessCache) Read(p Procs) ProcessEvidence {
	if c == nil {
		return p.Read()
	}
	p.inflight = &c.inflight
	key := p.Procfs + "\x00" + strconv.Itoa(p.TargetPID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.key == key && time.Since(c.at) < processTTL {
		return c.ev
	}
	ev := p.Read()
	c.key, c.at, c.ev = key, time.Now(), ev
	return ev
}
