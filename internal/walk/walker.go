package walk

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"golang.org/x/sys/unix"
)

// Defaults for ScanLimits.
const (
	DefaultScanBudget   = 100_000 // entries per scan run of the daemon
	DefaultOnceBudget   = 5_000_000
	DefaultScanMaxDepth = 128
	DefaultScanRate     = 20_000 // entries per second (--scan.rate)
)

// Stats is the progress of the budgeted tree scans.
type Stats struct {
	Entries         uint64 `json:"entries_total"`          // entries examined since start
	Passes          uint64 `json:"passes_total"`           // complete passes over every root
	BudgetExhausted uint64 `json:"budget_exhausted_total"` // runs that stopped at the budget, to resume later
	Complete        bool   `json:"complete"`               // the last run finished a pass
}

// Add sums o into s; Complete only when both are.
func (s *Stats) Add(o Stats) {
	s.Entries += o.Entries
	s.Passes += o.Passes
	s.BudgetExhausted += o.BudgetExhausted
	s.Complete = s.Complete && o.Complete
}

// ScanLimits bound what one run of a scanning check may cost.
type ScanLimits struct {
	// Budget is the most directory entries one Run examines; the next Run
	// resumes where it stopped. 0 means no limit.
	Budget int
	// Rate is the most entries per second; 0 means no limit.
	Rate float64
	// MaxDepth is how deep below a root the walk goes (default 128): each
	// level holds one file descriptor while the walk is in it.
	MaxDepth int
	// Workers is how many roots a pass walks at once (0 or 1: one at a
	// time). With more, a Run that starts a pass gives each root to the
	// next free worker, visit is called from that many goroutines at once,
	// and Budget and Rate bound the workers together; a Run that stops
	// before the pass is complete does not resume it, the next Run starts
	// a new pass. For a pass that must complete in one Run (--once), not
	// for the daemon's resumable, rate-limited runs.
	Workers int
}

// TooDeepErr is the error of a full pass (--once) that left directories
// deeper than the walk's depth limit unentered: the pass did not see them, so
// it must not call them clean. nil when there were none.
func (w *Walker) TooDeepErr() error {
	if w.tooDeep == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d directories deeper than %d levels were not entered", ErrScanIncomplete, w.tooDeep, w.Limits.MaxDepth)
}

// ErrScanIncomplete is wrapped by the error of a scanning check that had to
// finish its pass in one Run (--once) and stopped at its budget.
var ErrScanIncomplete = errors.New("scan stopped at its budget before the pass was complete")

// cursorLevel is where the walk stopped in one directory: the position to
// read on from (a getdents cookie) and the subdirectory being walked then.
type cursorLevel struct {
	off   int64
	child string
}

// Walker is a budgeted, resumable, read-only tree walk that:
//   - never follows a symlink: every directory is opened relative to its
//     parent's descriptor with O_NOFOLLOW, xattrs are read with
//     AT_SYMLINK_NOFOLLOW, and no path through the tree is ever resolved;
//   - never enters a FUSE, network or autofs mount: the snapshot decides
//     before any syscall touches the mount point, and a mount that appeared
//     after the snapshot is caught by its mount id (read with statx
//     AT_STATX_DONT_SYNC from an O_PATH descriptor, which asks no server);
//   - enters another mount only when it is a local filesystem in the tree
//     being scanned (a pod volume on tmpfs or ext4);
//   - holds no descriptor between runs (a held descriptor would make
//     kubelet's unmount of a volume fail with EBUSY): the cursor is names
//     and getdents positions.
type Walker struct {
	Limits ScanLimits
	host   mounts.Host

	Roots  []Root
	next   int // root in progress
	cursor []cursorLevel
	InPass bool

	Stats         Stats
	SkippedMounts uint64 // mount points not entered
	tooDeep       uint64 // directories below MaxDepth not entered
	walkErrors    uint64 // directories that could not be opened or read
	mountLookups  uint64 // mount-table lookups by mount point (MountLookups)
	lastErr       string

	// per run
	snap      *mounts.Snapshot // the table of this run: its mount-point and id indexes
	root      *mounts.Root     // the inspected root of this run, the caller's
	left      int              // entries left in this run's budget; <0 unlimited
	Done      int              // entries this run
	started   time.Time
	ctx       context.Context
	procfs    string
	visit     func(e *Entry) bool
	stopErr   error
	cursorSet bool               // the cursor of this stop is being recorded
	xbuf      []byte             // listxattr buffer, reused
	noOpenat2 bool               // openat2 refused (ENOSYS, EPERM: a system call filter)
	bases     map[string]baseDir // Root.Base directories open in this run
	shared    *shared            // the run's workers' common budget, if parallel
}

// Entry is one directory entry: handed to the visitor of Run, or made with
// Walker.Entry for a directory a check opened itself. Its xattrs are read
// through Guard and the syscall fallback of xattr.go.
type Entry struct {
	w     *Walker
	Dirfd int
	Mnt   int // mount id of the directory holding the entry
	Name  string
	Typ   uint8 // unix.DT_*
	Path  string
	Root  int // index into roots
	Rel   string
	depth int

	guarded  bool
	guardErr error
}

// Entry makes the entry name of the open directory dirfd (on mount mnt),
// for a check that reads a directory outside Run.
func (w *Walker) Entry(dirfd, mnt int, name string, typ uint8) *Entry {
	return &Entry{w: w, Dirfd: dirfd, Mnt: mnt, Name: name, Typ: typ}
}

// Guard decides, once, whether the entry may be touched by name: not the
// mount point of a mount the walk must not enter. The snapshot decides first,
// without a syscall; then statx with AT_STATX_DONT_SYNC (which asks no FUSE
// or NFS server) catches a mount made after the snapshot. Every xattr read
// goes through it.
func (e *Entry) Guard() error {
	if e.guarded {
		return e.guardErr
	}
	e.guarded = true
	expect := -1
	e.w.mountLookups++
	if e.Path != "" {
		for _, m := range e.w.snap.ByMountpoint(e.Path) {
			if m.MayHang() || !m.Local() {
				e.w.SkippedMounts++
				e.guardErr = fmt.Errorf("%w: %s is a %s mount point", ErrNotScannable, e.Path, m.FSType)
				return e.guardErr
			}
			expect = m.ID
		}
	}
	var st unix.Statx_t
	err := unix.Statx(e.Dirfd, e.Name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_DONT_SYNC|unix.AT_NO_AUTOMOUNT,
		unix.STATX_MNT_ID|unix.STATX_TYPE, &st)
	switch {
	case err != nil:
		e.guardErr = err
	case int(st.Mnt_id) != e.Mnt && int(st.Mnt_id) != expect:
		e.w.SkippedMounts++
		e.guardErr = fmt.Errorf("%w: %s is a mount point not in the mount table read", ErrNotScannable, e.Path)
	}
	return e.guardErr
}

// MountLookups is how many times the walker has looked a path up in the
// mount table since it was made: its mount bookkeeping, which must grow
// with what it walks and not with the size of the table (a test counts it).
func (w *Walker) MountLookups() uint64 { return w.mountLookups }

// Begin starts a run over snapshot s, resolving every root below root (the
// inspected namespace's, open; the caller closes it after End). Every
// Begin is followed by End.
func (w *Walker) Begin(ctx context.Context, s *mounts.Snapshot, root *mounts.Root) error {
	if root == nil {
		return fmt.Errorf("%w: no inspected root to walk from", mounts.ErrNamespaceUnreachable)
	}
	w.snap = s
	w.left = -1
	if w.Limits.Budget > 0 {
		w.left = w.Limits.Budget
	}
	if w.Limits.MaxDepth <= 0 {
		w.Limits.MaxDepth = DefaultScanMaxDepth
	}
	w.Done, w.started, w.ctx, w.stopErr, w.tooDeep = 0, time.Now(), ctx, nil, 0
	w.host = s.Host
	w.procfs = w.host.WithDefaults().Procfs
	w.root = root
	return nil
}

// End ends the run Begin started.
func (w *Walker) End() {
	w.closeBases()
	w.root = nil
	w.snap = nil // a walker kept between runs holds no table
}

// Run walks on from the cursor until the budget or the rate's deadline
// runs out or the pass completes; call it between begin and end. newPass
// supplies the roots when a pass starts. It returns whether a pass completed
// in this run and errors for roots that could not be opened.
func (w *Walker) Run(newPass func() []Root, visit func(*Entry) bool) (completed bool, rootErrs []error, err error) {
	w.visit = visit
	if !w.InPass {
		w.Roots, w.next, w.cursor, w.InPass = newPass(), 0, nil, true
	}
	if w.Limits.Workers > 1 && len(w.Roots) > 1 && w.next == 0 && w.cursor == nil {
		return w.runParallel()
	}
	for w.next < len(w.Roots) {
		r := w.Roots[w.next]
		w.cursorSet = false
		fd, mnt, err := w.OpenRoot(r)
		if err != nil {
			rootErrs = append(rootErrs, &RootError{Index: w.next, Err: err})
			w.next, w.cursor = w.next+1, nil
			continue
		}
		stopped := w.walkDir(fd, mnt, path.Clean(r.Path), "", 0, w.cursor)
		unix.Close(fd)
		if stopped {
			w.Stats.Complete = false
			if w.stopErr != nil {
				return false, rootErrs, w.stopErr
			}
			w.Stats.BudgetExhausted++
			return false, rootErrs, nil
		}
		w.next, w.cursor = w.next+1, nil
	}
	w.InPass = false
	w.Stats.Passes++
	w.Stats.Complete = true
	return true, rootErrs, nil
}

func (w *Walker) noteErr(p string, err error) {
	if errors.Is(err, unix.ENOENT) {
		return // removed while we walked: pods come and go
	}
	w.walkErrors++
	w.lastErr = p + ": " + err.Error()
}

// spend accounts for one entry; false means stop here (budget, rate
// deadline or cancellation).
func (w *Walker) spend() bool {
	if w.shared != nil {
		return w.spendShared()
	}
	if w.left == 0 {
		return false
	}
	if w.Done&255 == 0 && !w.pace(int64(w.Done)) {
		return false
	}
	if w.left > 0 {
		w.left--
	}
	w.Done++
	w.Stats.Entries++
	return true
}

// walkDir walks the open directory fd (logical path p, relative path rel
// below root) from resume, and closes nothing: the caller owns fd. It
// returns true when the walk stopped and w.cursor says where.
func (w *Walker) walkDir(fd, mnt int, p, rel string, depth int, resume []cursorLevel) (stopped bool) {
	pos, stopped, ok := w.resumeDir(fd, mnt, p, rel, depth, resume)
	if stopped || !ok {
		return stopped
	}
	buf := getdentsBuf()
	defer putGetdentsBuf(buf)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			w.noteErr(p, err)
			return false
		}
		if n <= 0 {
			return false
		}
		for off := 0; off < n; {
			d, ok := parseDirent(buf[off:n])
			if !ok {
				w.noteErr(p, fmt.Errorf("getdents: a malformed record at offset %d", off))
				return false
			}
			off += d.reclen
			name := string(d.name)
			if name == "." || name == ".." {
				pos = d.off
				continue
			}
			if !w.spend() {
				w.setCursor(depth, cursorLevel{off: pos})
				return true
			}
			if w.visitEntry(fd, mnt, p, rel, depth, name, d.typ) {
				w.setCursor(depth, cursorLevel{off: d.off, child: name})
				return true
			}
			pos = d.off
		}
	}
}

// resumeDir walks on from the cursor level resume[0] in fd: into the
// subdirectory the last run stopped in, then to the position it had read
// to. It returns that position, whether the walk stopped again, and false
// when the position cannot be reached.
func (w *Walker) resumeDir(fd, mnt int, p, rel string, depth int, resume []cursorLevel) (pos int64, stopped, ok bool) {
	if len(resume) == 0 {
		return 0, false, true
	}
	cur := resume[0]
	if cur.child != "" && w.descend(fd, mnt, p, rel, depth, cur.child, resume[1:]) {
		w.setCursor(depth, cursorLevel{off: cur.off, child: cur.child})
		return 0, true, false
	}
	if cur.off != 0 {
		if _, err := unix.Seek(fd, cur.off, 0); err != nil {
			w.noteErr(p, err)
			return 0, false, false
		}
	}
	return cur.off, false, true
}

// visitEntry hands entry name of fd to the visitor and descends into it when
// the visitor asks and it is a directory; true when the walk stopped inside.
func (w *Walker) visitEntry(fd, mnt int, p, rel string, depth int, name string, typ uint8) bool {
	cp := p + "/" + name
	if p == "/" {
		cp = "/" + name
	}
	crel := name
	if rel != "" {
		crel = rel + "/" + name
	}
	if typ == unix.DT_UNKNOWN {
		var st unix.Statx_t
		if err := unix.Statx(fd, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_DONT_SYNC|unix.AT_NO_AUTOMOUNT,
			unix.STATX_TYPE, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			typ = unix.DT_DIR
		}
	}
	e := Entry{w: w, Dirfd: fd, Mnt: mnt, Name: name, Typ: typ, Path: cp, Root: w.next, Rel: crel, depth: depth + 1}
	return w.visit(&e) && typ == unix.DT_DIR && w.descend(fd, mnt, p, rel, depth, name, nil)
}

// descend walks subdirectory name of fd; true when the walk stopped inside.
func (w *Walker) descend(fd, mnt int, p, rel string, depth int, name string, resume []cursorLevel) bool {
	cp := p + "/" + name
	if p == "/" {
		cp = "/" + name
	}
	crel := name
	if rel != "" {
		crel = rel + "/" + name
	}
	cfd, cmnt := w.openChild(fd, mnt, name, cp, depth+1)
	if cfd < 0 {
		return false
	}
	defer unix.Close(cfd)
	return w.walkDir(cfd, cmnt, cp, crel, depth+1, resume)
}

// setCursor records level depth of the cursor while a stop unwinds, deepest
// level first.
func (w *Walker) setCursor(depth int, c cursorLevel) {
	if !w.cursorSet {
		w.cursor, w.cursorSet = make([]cursorLevel, depth+1), true
	}
	w.cursor[depth] = c
}

// pace is checked every 256 entries: it stops the walk when its context is
// done (the deadline says whose: --once.timeout) and, under a rate, waits
// until done entries are due since the run started. false: stop.
func (w *Walker) pace(done int64) bool {
	if w.ctx.Err() != nil {
		w.stopErr = context.Cause(w.ctx)
		return false
	}
	if w.Limits.Rate <= 0 {
		return true
	}
	due := w.started.Add(time.Duration(float64(done) / w.Limits.Rate * float64(time.Second)))
	d := time.Until(due)
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.ctx.Done():
		w.stopErr = context.Cause(w.ctx)
		return false
	}
}
