package tasks

import (
	"cmp"
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
	"github.com/mountwatchd/mountwatchd/internal/probe"
)

// Defaults of Config.
const (
	DefaultMaxTasks    = 200000
	DefaultMaxReported = 100
	DefaultMaxPods     = 20
	DefaultTimeout     = 5 * time.Second
	maxMountinfoBytes  = 16 << 20
	maxTracked         = 20000
	pfKthread          = 0x00200000 // PF_KTHREAD in stat's flags
	maxNodeTasks       = 5          // tasks in no pod named per connection
	kubeletComm        = "kubelet"
)

// Config says where to look and how much to examine.
type Config struct {
	// Host is the inspected node: its procfs (Procfs, the node's when the
	// daemon runs with the host PID namespace), and where its pod log
	// directory is (PodLogDir, read through Host.FS).
	Host mounts.Host
	// Fusectl is where fusectl is mounted (probe.DefaultFusectl when
	// empty).
	Fusectl string
	// MaxTasks caps the tasks (threads) examined in one scan; past it the
	// scan stops and its report says Truncated.
	MaxTasks int
	// MaxReported caps the stuck tasks listed one by one in a report (all
	// are counted).
	MaxReported int
	// Timeout bounds how long ScanFor waits for a scan.
	Timeout time.Duration
	// StateFile, when set, keeps what the scanner saw stuck across
	// processes (see state.go): read before the first scan, written after
	// each. Its directory must exist.
	StateFile string

	// fusectlAnyDir takes Fusectl for fusectl without checking that it is
	// mounted there (the tests' captured directories).
	fusectlAnyDir bool
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

	mu       sync.Mutex
	seen     map[taskKey]seenTask
	lastKey  any
	last     *Report // the last scan finished, made for lastKey
	returned *Report // what the last ScanFor returned
	flying   *flight // a scan that has not returned; nil when none
	loaded   bool    // StateFile was read
}

// NewScanner returns a scanner with cfg's zero fields set to the defaults.
func NewScanner(cfg Config) *Scanner {
	cfg.Host = cfg.Host.WithDefaults()
	if cfg.Fusectl == "" {
		cfg.Fusectl = probe.DefaultFusectl
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

// scan is the state of one Scan.
type scan struct {
	sc       *Scanner
	snap     *mounts.Snapshot
	now      time.Time
	proc     string
	self     int
	selfComm string
	waiting  map[string]int  // fusectl: waiting requests by connection
	fusectl  bool            // fusectl could be read
	hung     map[string]bool // FUSE connections the probe round found hung
	inspNS   *string         // the inspected mount namespace (inspectedNS)
	buf      []byte
	nsTables map[string]map[int]*mounts.Mount // mount tables of other mount namespaces, by ns link
	rep      *Report
	tasks    []Task
	seen     map[taskKey]seenTask
}

// Scan examines every task of the node once and returns what is stuck. It
// reads only files that do not block on a stuck task (see the package
// doc); a task that exits while it is read is left out.
func (sc *Scanner) Scan(s *mounts.Snapshot) *Report { return sc.scan(s, nil) }

// hungFUSE are the FUSE connections round r found hung.
func hungFUSE(r *probe.Round) map[string]bool {
	out := map[string]bool{}
	if r == nil || r.Snapshot == nil {
		return out
	}
	for _, m := range r.Snapshot.Mounts {
		if res, ok := r.Results[m.ID]; ok && res.State == probe.Hung && fstypeFamily(m.FSType) == FamilyFUSE {
			out[m.Dev()] = true
		}
	}
	return out
}

// scan is Scan, knowing which FUSE connections the probe found hung: then
// the tasks are read whatever fusectl says or whether it can be read.
func (sc *Scanner) scan(s *mounts.Snapshot, hung map[string]bool) *Report {
	x := &scan{sc: sc, snap: s, now: time.Now(), proc: sc.cfg.Host.Procfs, buf: make([]byte, 8192),
		nsTables: map[string]map[int]*mounts.Mount{}, seen: map[taskKey]seenTask{}, hung: hung}
	x.rep = &Report{Taken: x.now, Conns: map[string]*Conn{}}
	x.self, x.selfComm = x.ourselves()
	boot := ""
	if sc.cfg.StateFile != "" {
		boot = x.bootID()
		if err := x.loadState(boot); err != nil {
			x.noteErr(err)
		}
		defer func() {
			if x.rep.Err != nil {
				return // no scan: keep what the file remembers
			}
			if err := x.saveState(boot); err != nil {
				x.noteErr(err)
			}
		}()
	}
	x.waiting, x.fusectl = readFusectl(sc.cfg.Fusectl, sc.cfg.fusectlAnyDir)
	// A task can sleep interruptibly (S) in request_wait_answer only while
	// its FUSE connection has a request waiting: with none, only D tasks
	// need their wait channel read. Without fusectl, or with a connection
	// the probe found hung, nothing says none waits.
	readS := !x.fusectl || len(hung) > 0
	for _, n := range x.waiting {
		readS = readS || n > 0
	}
	// Every FUSE wait is on a request (request_wait_answer), or behind a
	// task that waits on one (a lock it holds), and fusectl counts each
	// request in flight. With none, and no network filesystem mounted,
	// nothing can be stuck: the node's tasks are not read at all, which
	// keeps a healthy node's probe runs as cheap as they were.
	if !readS && !hasNetwork(s) {
		// (readS is set whenever the probe found a FUSE connection hung.)
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
		x.process(pid, readS)
		if x.rep.Truncated {
			break
		}
	}
	x.finish()
	return x.rep
}

// process examines the tasks (threads) of process pid, reading its
// cgroup once, for the first of them that is stuck.
func (x *scan) process(pid int, readS bool) {
	dir := filepath.Join(x.proc, strconv.Itoa(pid))
	tids, err := os.ReadDir(filepath.Join(dir, "task"))
	if err != nil {
		x.readErr(err)
		return
	}
	var pod *Pod
	podRead := false
	for _, te := range tids {
		tid, err := strconv.Atoi(te.Name())
		if err != nil {
			continue
		}
		if x.rep.Examined >= x.sc.cfg.MaxTasks {
			x.rep.Truncated = true
			return
		}
		x.rep.Examined++
		t, key, ok := x.task(pid, tid, readS)
		if !ok {
			continue
		}
		if !podRead {
			podRead = true
			pod = x.pod(dir)
		}
		if pod != nil {
			p := *pod
			t.Pod = &p
		}
		x.track(&t, key, pid, tid)
		x.tasks = append(x.tasks, t)
	}
}

// pod is the pod of the process whose /proc directory is dir, from its
// cgroup; nil for a task of the node itself.
func (x *scan) pod(dir string) *Pod {
	data, err := x.read(filepath.Join(dir, "cgroup"))
	if err != nil {
		x.readErr(err)
		return nil
	}
	if p, ok := parseCgroup(data); ok {
		return &p
	}
	return nil
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
	if st.Flags&pfKthread != 0 || x.ours(st.Comm) || (tid != pid && x.oursLeader(pid)) {
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
	return t, taskKey{tid, st.StartTime}, true
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
	x.attributeRest()
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
			if len(c.NodeList) < maxNodeTasks {
				c.NodeList = append(c.NodeList, NodeTask{Comm: t.Comm, PID: t.PID, Kubelet: t.Comm == kubeletComm})
			}
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

// noteErr keeps an error of the scan's own (its state file) in the report.
func (x *scan) noteErr(err error) {
	if len(x.rep.Errors) < 6 {
		x.rep.Errors = append(x.rep.Errors, err.Error())
	}
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
