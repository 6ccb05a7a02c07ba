package tasks

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// Defaults of Config.
const (
	DefaultMaxTasks    = 200000
	DefaultMaxReported = 100
	DefaultMaxPods     = 20
	DefaultTimeout     = 5 * time.Second
	DefaultFusectl     = "/sys/fs/fuse/connections"
	maxMountinfoBytes  = 16 << 20
	maxTracked         = 20000
	pfKthread          = 0x00200000 // PF_KTHREAD in stat's flags
)

// Config says where to look and how much to examine.
type Config struct {
	// Host is the inspected node: its procfs (Procfs, the node's when the
	// daemon runs with the host PID namespace), and where its pod log
	// directory is (PodLogDir, read through Host.Path).
	Host mounts.Host
	// Fusectl is where fusectl is mounted (DefaultFusectl when empty).
	Fusectl string
	// MaxTasks caps the tasks (threads) examined in one scan; past it the
	// scan stops and its report says Truncated.
	MaxTasks int
	// MaxReported caps the stuck tasks listed one by one in a report (all
	// are counted).
	MaxReported int
	// Timeout bounds how long ScanFor waits for a scan.
	Timeout time.Duration
}

// Task is one task stuck on a FUSE or network filesystem.
type Task struct {
	PID   int    `json:"pid"`
	TID   int    `json:"tid"`
	Comm  string `json:"comm"` // from stat, never cmdline
	State string `json:"state"`
	Wchan string `json:"wchan"`
	// Syscall is the system call it is blocked in ("none" outside one:
	// a page fault).
	Syscall string `json:"syscall"`
	// Family is the kind of filesystem it waits on (FamilyFUSE, ...).
	Family string `json:"family"`
	// Conn is the connection (major:minor) it waits on, "" when the
	// kernel does not say which.
	Conn string `json:"connection,omitempty"`
	// MountID is the mount of the descriptor it works on, when that mount
	// is in the inspected mount table; FSType its filesystem type.
	MountID int    `json:"mount_id,omitempty"`
	FSType  string `json:"fstype,omitempty"`
	// By says how Conn was found: "fd" (the descriptor the call works
	// on), "dirfd" (the directory a relative path started from),
	// "fusectl" (the only FUSE connection with requests waiting).
	By  string `json:"attributed_by,omitempty"`
	Pod *Pod   `json:"pod,omitempty"`
	// FirstSeen is when this process first saw the task in this wait: the
	// kernel does not say when a wait began, so it is the first scan that
	// found it, kept while the task has not run since (its context switch
	// counts did not change).
	FirstSeen time.Time `json:"first_seen"`
}

// PodTasks counts the stuck tasks of one pod (and container).
type PodTasks struct {
	Pod
	Tasks int `json:"tasks"`
}

// Conn is what is stuck on one connection.
type Conn struct {
	Dev   string    `json:"connection"`
	Tasks int       `json:"tasks"`
	Since time.Time `json:"since"` // the earliest FirstSeen of its tasks
	// Pods are the pods with stuck tasks, most tasks first, at most
	// DefaultMaxPods; NodeTasks counts the tasks in no pod.
	Pods      []PodTasks `json:"pods,omitempty"`
	MorePods  int        `json:"more_pods,omitempty"`
	NodeTasks int        `json:"node_tasks,omitempty"`
}

// Report is one scan of the node's tasks.
type Report struct {
	Taken time.Time `json:"taken"`
	// Examined counts the tasks looked at; Truncated says the scan stopped
	// at Config.MaxTasks.
	Examined  int  `json:"examined"`
	Truncated bool `json:"truncated,omitempty"`
	// Stuck counts every stuck task found; Tasks lists the longest stuck,
	// at most Config.MaxReported.
	Stuck int    `json:"stuck"`
	Tasks []Task `json:"tasks,omitempty"`
	// Conns has the stuck tasks attributed to a connection, by major:minor.
	Conns map[string]*Conn `json:"connections,omitempty"`
	// Unattributed counts stuck tasks whose connection the kernel does not
	// say (several FUSE connections have waiting requests, or an NFS wait
	// outside a descriptor's call).
	Unattributed int `json:"unattributed"`
	// Unreadable counts tasks whose files could not be read for another
	// reason than the task exiting; Errors holds the first few reasons.
	Unreadable int      `json:"unreadable,omitempty"`
	Errors     []string `json:"errors,omitempty"`
	// Skipped says why no task was examined although nothing failed: no
	// task can be waiting on a FUSE or network server.
	Skipped string `json:"skipped,omitempty"`
	// Err says why there is no scan: procfs could not be listed, or an
	// earlier scan has not returned.
	Err error `json:"-"`
}

// MarshalJSON writes Err as "error".
func (r *Report) MarshalJSON() ([]byte, error) {
	type plain Report
	e := ""
	if r.Err != nil {
		e = r.Err.Error()
	}
	return json.Marshal(struct {
		*plain
		Error string `json:"error,omitempty"`
	}{(*plain)(r), e})
}

// Conn returns what is stuck on connection dev, or nil.
func (r *Report) Conn(dev string) *Conn {
	if r == nil {
		return nil
	}
	return r.Conns[dev]
}

type taskKey struct {
	tid   int
	start uint64
}

type seenTask struct {
	first    time.Time
	switches uint64
	ok       bool // switches was read
}

// Scanner scans the node's tasks and remembers since when each stuck task
// has been seen. Its methods are safe for concurrent use.
type Scanner struct {
	cfg Config

	mu      sync.Mutex
	seen    map[taskKey]seenTask
	lastKey any
	last    *Report
	flying  time.Time // start of a scan that has not returned; zero when none
}

// NewScanner returns a scanner with cfg's zero fields set to the defaults.
func NewScanner(cfg Config) *Scanner {
	cfg.Host = cfg.Host.WithDefaults()
	if cfg.Fusectl == "" {
		cfg.Fusectl = DefaultFusectl
	}
	if cfg.MaxTasks <= 0 {
		cfg.MaxTasks = DefaultMaxTasks
	}
	if cfg.MaxReported <= 0 {
		cfg.MaxReported = DefaultMaxReported
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Scanner{cfg: cfg, seen: map[taskKey]seenTask{}}
}

// ScanFor returns the scan made for key (the probe round the checks of one
// run share), making it if none was: the checks of a run see one scan. It
// waits at most Config.Timeout, and not past ctx; a scan that has not returned by then is
// left to finish on its own, and until it does every call returns a report
// whose Err says so instead of starting another (at most one is ever in
// flight).
func (sc *Scanner) ScanFor(ctx context.Context, key any, s *mounts.Snapshot) *Report {
	sc.mu.Lock()
	if key != nil && sc.lastKey == key && sc.last != nil {
		r := sc.last
		sc.mu.Unlock()
		return r
	}
	if !sc.flying.IsZero() {
		since := sc.flying
		sc.mu.Unlock()
		return &Report{Taken: time.Now(), Err: fmt.Errorf("an earlier scan of the tasks has not returned since %s", since.UTC().Format(time.RFC3339))}
	}
	sc.flying = time.Now()
	sc.mu.Unlock()

	done := make(chan *Report, 1)
	go func() {
		r := sc.Scan(s)
		sc.mu.Lock()
		sc.flying = time.Time{}
		sc.lastKey, sc.last = key, r
		sc.mu.Unlock()
		done <- r
	}()
	timer := time.NewTimer(sc.cfg.Timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r
	case <-timer.C:
		return &Report{Taken: time.Now(), Err: fmt.Errorf("the scan of the tasks did not finish within %s", sc.cfg.Timeout)}
	case <-ctx.Done():
		return &Report{Taken: time.Now(), Err: fmt.Errorf("the scan of the tasks did not finish: %w", context.Cause(ctx))}
	}
}

// scan is the state of one Scan.
type scan struct {
	sc       *Scanner
	snap     *mounts.Snapshot
	now      time.Time
	proc     string
	self     int
	selfComm string
	waiting  map[string]int // fusectl: waiting requests by connection
	fusectl  bool           // fusectl could be read
	buf      []byte
	nsTables map[string]map[int]*mounts.Mount // mount tables of other mount namespaces, by ns link
	rep      *Report
	tasks    []Task
	seen     map[taskKey]seenTask
}

// Scan examines every task of the node once and returns what is stuck. It
// reads only files that do not block on a stuck task (see the package
// doc); a task that exits while it is read is left out.
func (sc *Scanner) Scan(s *mounts.Snapshot) *Report {
	x := &scan{sc: sc, snap: s, now: time.Now(), proc: sc.cfg.Host.Procfs, buf: make([]byte, 8192),
		nsTables: map[string]map[int]*mounts.Mount{}, seen: map[taskKey]seenTask{}}
	x.rep = &Report{Taken: x.now, Conns: map[string]*Conn{}}
	x.self, x.selfComm = x.ourselves()
	x.waiting, x.fusectl = readFusectl(sc.cfg.Fusectl)
	// A task can sleep interruptibly (S) in request_wait_answer only while
	// its FUSE connection has a request waiting: with none, only D tasks
	// need their wait channel read.
	readS := !x.fusectl
	for _, n := range x.waiting {
		readS = readS || n > 0
	}
	// Every FUSE wait is on a request (request_wait_answer), or behind a
	// task that waits on one (a lock it holds), and fusectl counts each
	// request in flight. With none, and no network filesystem mounted,
	// nothing can be stuck: the node's tasks are not read at all, which
	// keeps a healthy node's probe runs as cheap as they were.
	if !readS && !hasNetwork(s) {
		x.rep.Skipped = "no FUSE request is waiting (fusectl) and no network filesystem is mounted"
		x.finish()
		return x.rep
	}

	pids, err := os.ReadDir(x.proc)
	if err != nil {
		x.rep.Err = fmt.Errorf("list %s: %w", x.proc, err)
		return x.rep
	}
	for _, pe := range pids {
		pid, err := strconv.Atoi(pe.Name())
		if err != nil || pid == x.self {
			continue
		}
		tids, err := os.ReadDir(filepath.Join(x.proc, pe.Name(), "task"))
		if err != nil {
			x.readErr(err)
			continue
		}
		var cgroup *Pod
		cgroupRead := false
		for _, te := range tids {
			tid, err := strconv.Atoi(te.Name())
			if err != nil {
				continue
			}
			if x.rep.Examined >= sc.cfg.MaxTasks {
				x.rep.Truncated = true
				break
			}
			x.rep.Examined++
			t, key, ok := x.task(pid, tid, readS)
			if !ok {
				continue
			}
			if !cgroupRead {
				cgroupRead = true
				if data, err := x.read(filepath.Join(x.proc, pe.Name(), "cgroup")); err == nil {
					if p, ok := parseCgroup(data); ok {
						cgroup = &p
					}
				} else {
					x.readErr(err)
				}
			}
			if cgroup != nil {
				p := *cgroup
				t.Pod = &p
			}
			x.track(&t, key, pid, tid)
			x.tasks = append(x.tasks, t)
		}
		if x.rep.Truncated {
			break
		}
	}
	x.finish()
	return x.rep
}

// hasNetwork says whether s has a network filesystem (or has no table to
// say: then the node's tasks are read).
func hasNetwork(s *mounts.Snapshot) bool {
	if s == nil {
		return true
	}
	for _, m := range s.Mounts {
		if m.Network {
			return true
		}
	}
	return false
}

// ourselves is our own PID as the inspected procfs numbers it, and our
// command name: our own probes, and the helper processes they run in, are
// the probe's hang, reported by the probe, not stuck users (see ours).
func (x *scan) ourselves() (int, string) {
	link, err := os.Readlink(filepath.Join(x.proc, "self"))
	if err != nil {
		return -1, ""
	}
	pid, err := strconv.Atoi(link)
	if err != nil {
		return -1, ""
	}
	comm := ""
	if data, err := x.read(filepath.Join(x.proc, link, "stat")); err == nil {
		if st, err := parseStat(data); err == nil {
			comm = st.Comm
		}
	}
	return pid, comm
}

// ours says whether a task of this name is one of ours: this process, or a
// helper process it started (the same binary, named like us or
// <our name>-<role>, as the probe helpers are).
func (x *scan) ours(comm string) bool {
	return x.selfComm != "" && (comm == x.selfComm || strings.HasPrefix(comm, x.selfComm+"-"))
}

// task reads one task and reports whether it is stuck on a FUSE or network
// filesystem.
func (x *scan) task(pid, tid int, readS bool) (Task, taskKey, bool) {
	dir := filepath.Join(x.proc, strconv.Itoa(pid), "task", strconv.Itoa(tid))
	data, err := x.read(filepath.Join(dir, "stat"))
	if err != nil {
		x.readErr(err)
		return Task{}, taskKey{}, false
	}
	st, err := parseStat(data)
	if err != nil {
		x.readErr(fmt.Errorf("%s: %w", filepath.Join(dir, "stat"), err))
		return Task{}, taskKey{}, false
	}
	if st.State != 'D' && (st.State != 'S' || !readS) {
		return Task{}, taskKey{}, false
	}
	if st.Flags&pfKthread != 0 || x.ours(st.Comm) {
		return Task{}, taskKey{}, false
	}
	data, err = x.read(filepath.Join(dir, "wchan"))
	if err != nil {
		x.readErr(err)
		return Task{}, taskKey{}, false
	}
	wchan := strings.TrimSpace(string(data))
	if wchan == "0" {
		// The kernel hides the wait channel from a reader that may not
		// ptrace the task (no CAP_SYS_PTRACE, another user's task).
		x.readErr(fmt.Errorf("%s: hidden (reading another user's task needs CAP_SYS_PTRACE)", filepath.Join(dir, "wchan")))
		return Task{}, taskKey{}, false
	}
	if !stuckState(st.State, wchan) {
		return Task{}, taskKey{}, false
	}
	t := Task{PID: pid, TID: tid, Comm: st.Comm, State: string(st.State), Wchan: wchan,
		Family: waitFamily(wchan), Syscall: "unknown"}
	if data, err := x.read(filepath.Join(dir, "syscall")); err == nil {
		if sc, err := parseSyscall(data); err == nil {
			t.Syscall = syscallName(sc.Nr)
			x.attributeFD(&t, dir, sc)
		}
	} else {
		x.readErr(err)
	}
	if t.Family == "" {
		// A wait of no filesystem's own (a VFS lock, a page lock): it
		// counts only when its descriptor is on a FUSE or network mount.
		return Task{}, taskKey{}, false
	}
	if t.Conn == "" && t.Family == FamilyFUSE {
		x.attributeFusectl(&t)
	}
	return t, taskKey{tid, st.StartTime}, true
}

// attributeFD attributes t to the mount of the descriptor its system call
// works on, when the mount's family agrees with the wait.
func (x *scan) attributeFD(t *Task, dir string, sc syscallLine) {
	fd, dirfd, ok := fdOf(sc)
	if !ok {
		return
	}
	data, err := x.read(filepath.Join(dir, "fdinfo", strconv.Itoa(fd)))
	if err != nil {
		if !vanished(err) {
			x.readErr(err)
		}
		return // closed meanwhile (close(2) drops it before FUSE_FLUSH)
	}
	id, err := parseMntID(data)
	if err != nil {
		return
	}
	m := x.mountByID(t.PID, id)
	if m == nil {
		return
	}
	fam := fstypeFamily(m.FSType)
	switch {
	case t.Family != "" && fam != t.Family:
		return // e.g. a read from a local file into a buffer mapped from FUSE
	case t.Family == "" && (dirfd || !m.FUSE && !m.Network):
		return
	case t.Family == "":
		t.Family = cmp.Or(fam, m.FSType)
	}
	t.Conn, t.FSType, t.By = m.Dev(), m.FSType, "fd"
	if dirfd {
		t.By = "dirfd"
	}
	if x.snap != nil && x.snap.ByID[id] == m {
		t.MountID = id
	}
}

// attributeFusectl attributes a FUSE wait to the only FUSE connection with
// requests waiting, if there is one.
func (x *scan) attributeFusectl(t *Task) {
	conn := ""
	for c, n := range x.waiting {
		if n == 0 {
			continue
		}
		if conn != "" {
			return // several: the kernel does not say which
		}
		conn = c
	}
	if conn != "" {
		t.Conn, t.By = conn, "fusectl"
	}
}

// mountByID finds mount id: in the inspected table, else in the mount table
// of the task's own mount namespace (a container's mounts are copies, with
// ids of their own). Mount ids are unique on the node.
func (x *scan) mountByID(pid, id int) *mounts.Mount {
	if x.snap != nil {
		if m := x.snap.ByID[id]; m != nil {
			return m
		}
	}
	pdir := filepath.Join(x.proc, strconv.Itoa(pid))
	ns, err := os.Readlink(filepath.Join(pdir, "ns", "mnt"))
	if err != nil {
		ns = "pid:" + strconv.Itoa(pid)
	}
	table, ok := x.nsTables[ns]
	if !ok {
		table = map[int]*mounts.Mount{}
		if f, err := os.Open(filepath.Join(pdir, "mountinfo")); err == nil {
			ms, _, _, _ := mounts.ParseMountTableLimit(f, maxMountinfoBytes)
			f.Close()
			for _, m := range ms {
				table[m.ID] = m
			}
		}
		x.nsTables[ns] = table
	}
	return table[id]
}

// track sets t's FirstSeen from the previous scans.
func (x *scan) track(t *Task, key taskKey, pid, tid int) {
	cur := seenTask{first: x.now}
	if data, err := x.read(filepath.Join(x.proc, strconv.Itoa(pid), "task", strconv.Itoa(tid), "status")); err == nil {
		if n, err := parseSwitches(data); err == nil {
			cur.switches, cur.ok = n, true
		}
	}
	x.sc.mu.Lock()
	prev, ok := x.sc.seen[key]
	x.sc.mu.Unlock()
	if ok && (!prev.ok || !cur.ok || prev.switches == cur.switches) {
		cur.first = prev.first // has not run since: the same wait
	}
	t.FirstSeen = cur.first
	if len(x.seen) < maxTracked {
		x.seen[key] = cur
	}
}

// finish counts the tasks by connection and pod, names the pods and lists
// the longest stuck.
func (x *scan) finish() {
	x.sc.mu.Lock()
	x.sc.seen = x.seen
	x.sc.mu.Unlock()
	x.nameCluster()
	slices.SortFunc(x.tasks, func(a, b Task) int {
		return cmp.Or(a.FirstSeen.Compare(b.FirstSeen), cmp.Compare(a.PID, b.PID), cmp.Compare(a.TID, b.TID))
	})
	pods := map[string]map[Pod]int{}
	for _, t := range x.tasks {
		x.rep.Stuck++
		if t.Conn == "" {
			x.rep.Unattributed++
			continue
		}
		c := x.rep.Conns[t.Conn]
		if c == nil {
			c = &Conn{Dev: t.Conn, Since: t.FirstSeen}
			x.rep.Conns[t.Conn] = c
			pods[t.Conn] = map[Pod]int{}
		}
		c.Tasks++
		if t.FirstSeen.Before(c.Since) {
			c.Since = t.FirstSeen
		}
		if t.Pod == nil {
			c.NodeTasks++
		} else {
			pods[t.Conn][*t.Pod]++
		}
	}
	for dev, byPod := range pods {
		c := x.rep.Conns[dev]
		for p, n := range byPod {
			c.Pods = append(c.Pods, PodTasks{Pod: p, Tasks: n})
		}
		slices.SortFunc(c.Pods, func(a, b PodTasks) int {
			return cmp.Or(cmp.Compare(b.Tasks, a.Tasks), cmp.Compare(a.Namespace, b.Namespace),
				cmp.Compare(a.Name, b.Name), cmp.Compare(a.UID, b.UID), cmp.Compare(a.Container, b.Container),
				cmp.Compare(a.ContainerID, b.ContainerID))
		})
		if len(c.Pods) > DefaultMaxPods {
			c.MorePods = len(c.Pods) - DefaultMaxPods
			c.Pods = c.Pods[:DefaultMaxPods]
		}
	}
	if len(x.tasks) > x.sc.cfg.MaxReported {
		x.tasks = x.tasks[:x.sc.cfg.MaxReported]
	}
	x.rep.Tasks = x.tasks
}

// nameCluster fills in pod namespaces and names (from the mount table's pod
// volumes, else kubelet's pod log directory) and container names (from
// kubelet's container log links), reading kubelet's files only when a
// stuck task is in a pod.
func (x *scan) nameCluster() {
	need := false
	for _, t := range x.tasks {
		need = need || t.Pod != nil
	}
	if !need {
		return
	}
	known := map[string][2]string{}
	if x.snap != nil {
		for _, m := range x.snap.Mounts {
			if k := m.Kube; k != nil && k.PodUID != "" && k.PodName != "" {
				known[k.PodUID] = [2]string{k.PodNamespace, k.PodName}
			}
		}
	}
	h := x.sc.cfg.Host
	var kf *mounts.KubeFiles
	containers := containerLogNames(h)
	for i := range x.tasks {
		p := x.tasks[i].Pod
		if p == nil {
			continue
		}
		if nn, ok := known[p.UID]; ok {
			p.Namespace, p.Name = nn[0], nn[1]
		} else {
			if kf == nil {
				kf = mounts.OpenKubeFiles(h)
				defer kf.Close()
			}
			if ns, name, ok := kf.Pod(p.UID); ok {
				p.Namespace, p.Name = ns, name
				known[p.UID] = [2]string{ns, name}
			}
		}
		if c, ok := containers[p.ContainerID]; ok {
			p.Container = c.container
			if p.Name == "" {
				p.Namespace, p.Name = c.namespace, c.pod
			}
		}
	}
}

type containerLog struct{ pod, namespace, container string }

// containerLogNames reads kubelet's container log links,
// <pod>_<namespace>_<container>-<container id>.log in the containers
// directory beside the pod log directory (/var/log/containers): the one
// place on a node that names a container by its runtime id without asking
// the runtime. Only the names are read; no link is followed.
func containerLogNames(h mounts.Host) map[string]containerLog {
	out := map[string]containerLog{}
	entries, err := os.ReadDir(h.Path(filepath.Join(filepath.Dir(filepath.Clean(h.PodLogDir)), "containers")))
	if err != nil {
		return out
	}
	for _, e := range entries {
		if c, id, ok := parseContainerLog(e.Name()); ok {
			out[id] = c
		}
	}
	return out
}

// parseContainerLog splits <pod>_<namespace>_<container>-<id>.log. Neither
// pod, namespace nor container names hold '_'; the id is the part after the
// container name's last '-'.
func parseContainerLog(name string) (containerLog, string, bool) {
	base, ok := strings.CutSuffix(name, ".log")
	if !ok {
		return containerLog{}, "", false
	}
	parts := strings.Split(base, "_")
	if len(parts) != 3 {
		return containerLog{}, "", false
	}
	i := strings.LastIndexByte(parts[2], '-')
	if i <= 0 || !isID(parts[2][i+1:]) || parts[0] == "" || parts[1] == "" {
		return containerLog{}, "", false
	}
	return containerLog{pod: parts[0], namespace: parts[1], container: parts[2][:i]}, parts[2][i+1:], true
}

// readFusectl reads the waiting count of every FUSE connection, by
// major:minor. fusectl names a connection by its device number, which for
// FUSE's anonymous devices (major 0) is the minor.
func readFusectl(dir string) (map[string]int, bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, false
	}
	out := map[string]int{}
	for _, e := range entries {
		n, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), "waiting"))
		if err != nil {
			continue
		}
		w, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			continue
		}
		// The kernel's dev_t: major in the top 12 bits, minor in the low 20.
		out[strconv.FormatUint(n>>20, 10)+":"+strconv.FormatUint(n&0xfffff, 10)] = w
	}
	return out, true
}

// read reads a small /proc file into the scan's buffer; the bytes are valid
// until the next read.
func (x *scan) read(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	n := 0
	for n < len(x.buf) {
		m, err := unix.Read(fd, x.buf[n:])
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	return x.buf[:n], nil
}

// vanished says whether err means the task (or descriptor) is gone.
func vanished(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}

// readErr counts an error reading a task's files, unless the task exited.
func (x *scan) readErr(err error) {
	if vanished(err) {
		return
	}
	x.rep.Unreadable++
	if len(x.rep.Errors) < 5 && !slices.Contains(x.rep.Errors, err.Error()) {
		x.rep.Errors = append(x.rep.Errors, err.Error())
	}
}

// Last returns the report of the last scan ScanFor finished, or nil.
func (sc *Scanner) Last() *Report {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.last
}
