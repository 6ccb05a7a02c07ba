package probe

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Defaults for ScanLimits.
const (
	DefaultScanBudget   = 100_000 // entries per scan run of the daemon
	DefaultOnceBudget   = 5_000_000
	DefaultScanMaxDepth = 128
)

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
}

// ErrScanIncomplete is wrapped by the error of a scanning check that had to
// finish its pass in one Run (--once) and stopped at its budget.
var ErrScanIncomplete = errors.New("scan stopped at its budget before the pass was complete")

// walkRoot is one tree a pass walks.
type walkRoot struct {
	// Path is the directory as the inspected namespace sees it.
	Path string
	// InRoot resolves the path inside the inspected root, following
	// symlinks there (layer directories, which come from the kernel's mount
	// table and are the container runtime's). Without it any symlink in the
	// path is refused (scan roots: the walk's mount bookkeeping needs real
	// paths).
	InRoot bool
}

// rootError is a root of a pass that could not be walked.
type rootError struct {
	Index int // into the pass's roots
	Err   error
}

func (e *rootError) Error() string { return e.Err.Error() }
func (e *rootError) Unwrap() error { return e.Err }

// cursorLevel is where the walk stopped in one directory: the position to
// read on from (a getdents cookie) and the subdirectory being walked then.
type cursorLevel struct {
	off   int64
	child string
}

// walker is a budgeted, resumable, read-only tree walk that:
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
type walker struct {
	limits ScanLimits
	host   Host

	roots  []walkRoot
	next   int // root in progress
	cursor []cursorLevel
	inPass bool

	stats         ScanStats
	skippedMounts uint64 // mount points not entered
	tooDeep       uint64 // directories below MaxDepth not entered
	walkErrors    uint64 // directories that could not be opened or read
	mountLookups  uint64 // mount table lookups by mount point, for the test that work is linear in pods
	lastErr       string

	// per run
	mounts    map[string][]*Mount
	byID      map[int]*Mount
	hostFD    int
	left      int // entries left in this run's budget; <0 unlimited
	done      int // entries this run
	started   time.Time
	ctx       context.Context
	procfs    string
	visit     func(e *entry) bool
	stopErr   error
	cursorSet bool   // the cursor of this stop is being recorded
	xbuf      []byte // listxattr buffer, reused
}

// entry is one directory entry handed to the visitor.
type entry struct {
	w     *walker
	dirfd int
	mnt   int // mount id of the directory holding the entry
	name  string
	typ   uint8 // unix.DT_*
	path  string
	root  int // index into roots
	rel   string
	depth int

	guarded  bool
	guardErr error
}

// guard decides, once, whether the entry may be touched by name: not the
// mount point of a mount the walk must not enter. The snapshot decides first,
// without a syscall; then statx with AT_STATX_DONT_SYNC (which asks no FUSE
// or NFS server) catches a mount made after the snapshot. Every xattr read
// goes through it.
func (e *entry) guard() error {
	if e.guarded {
		return e.guardErr
	}
	e.guarded = true
	expect := -1
	e.w.mountLookups++
	if ms, ok := e.w.mounts[e.path]; ok && e.path != "" {
		for _, m := range ms {
			if mayHang(m) || !localFSTypes[m.FSType] {
				e.w.skippedMounts++
				e.guardErr = fmt.Errorf("%w: %s is a %s mount point", ErrNotScannable, e.path, m.FSType)
				return e.guardErr
			}
			expect = m.ID
		}
	}
	var st unix.Statx_t
	err := unix.Statx(e.dirfd, e.name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_DONT_SYNC|unix.AT_NO_AUTOMOUNT,
		unix.STATX_MNT_ID|unix.STATX_TYPE, &st)
	switch {
	case err != nil:
		e.guardErr = err
	case int(st.Mnt_id) != e.mnt && int(st.Mnt_id) != expect:
		e.w.skippedMounts++
		e.guardErr = fmt.Errorf("%w: %s is a mount point not in the mount table read", ErrNotScannable, e.path)
	}
	return e.guardErr
}

// begin starts a run over snapshot s: it opens the inspected root and
// indexes the mounts. Every begin is followed by end.
func (w *walker) begin(ctx context.Context, s *Snapshot) error {
	w.mounts = make(map[string][]*Mount, len(s.Mounts))
	w.byID = make(map[int]*Mount, len(s.Mounts))
	for _, m := range s.Mounts {
		w.mounts[m.Mountpoint] = append(w.mounts[m.Mountpoint], m)
		w.byID[m.ID] = m
	}
	w.left = -1
	if w.limits.Budget > 0 {
		w.left = w.limits.Budget
	}
	if w.limits.MaxDepth <= 0 {
		w.limits.MaxDepth = DefaultScanMaxDepth
	}
	w.done, w.started, w.ctx, w.stopErr = 0, time.Now(), ctx, nil
	w.host = s.Host
	w.procfs = w.host.withDefaults().Procfs
	fd, err := unix.Open(w.host.Path("/"), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open root of the inspected namespace %s: %w", w.host.Path("/"), err)
	}
	w.hostFD = fd
	return nil
}

func (w *walker) end() {
	if w.hostFD > 0 {
		unix.Close(w.hostFD)
	}
	w.hostFD = -1
}

// run walks on from the cursor until the budget or the rate's deadline
// runs out or the pass completes; call it between begin and end. newPass
// supplies the roots when a pass starts. It returns whether a pass completed
// in this run and errors for roots that could not be opened.
func (w *walker) run(newPass func() []walkRoot, visit func(*entry) bool) (completed bool, rootErrs []error, err error) {
	w.visit = visit
	if !w.inPass {
		w.roots, w.next, w.cursor, w.inPass = newPass(), 0, nil, true
	}
	for w.next < len(w.roots) {
		r := w.roots[w.next]
		w.cursorSet = false
		fd, mnt, err := w.openRoot(r)
		if err != nil {
			rootErrs = append(rootErrs, &rootError{Index: w.next, Err: err})
			w.next, w.cursor = w.next+1, nil
			continue
		}
		stopped := w.walkDir(fd, mnt, path.Clean(r.Path), "", 0, w.cursor)
		unix.Close(fd)
		if stopped {
			w.stats.Complete = false
			if w.stopErr != nil {
				return false, rootErrs, w.stopErr
			}
			w.stats.BudgetExhausted++
			return false, rootErrs, nil
		}
		w.next, w.cursor = w.next+1, nil
	}
	w.inPass = false
	w.stats.Passes++
	w.stats.Complete = true
	return true, rootErrs, nil
}

// openRel opens directory rel (slash separated) below root r, one
// component at a time with O_NOFOLLOW, entering no other mount.
func (w *walker) openRel(r walkRoot, rel string) (int, error) {
	fd, mnt, err := w.openRoot(r)
	if err != nil {
		return -1, err
	}
	for _, name := range strings.Split(rel, "/") {
		if name == "" || name == "." {
			continue
		}
		if name == ".." {
			unix.Close(fd)
			return -1, fmt.Errorf("%s: %q leaves the directory", r.Path, rel)
		}
		pfd, err := unix.Openat(fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		cmnt, err := mountID(pfd)
		if err == nil && cmnt != mnt {
			err = fmt.Errorf("%w: %s/%s is another mount", ErrNotScannable, r.Path, rel)
		}
		if err == nil {
			fd, err = unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		}
		unix.Close(pfd)
		if err != nil {
			return -1, err
		}
	}
	return fd, nil
}

// dirent is a directory entry read by readDir.
type dirent struct {
	name string
	typ  uint8
}

// readDir reads at most max entries of the open directory fd from its
// start, without "." and "..".
func readDir(fd, max int) ([]dirent, error) {
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return nil, err
	}
	var out []dirent
	buf := make([]byte, 32<<10)
	for len(out) < max {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return out, err
		}
		if n <= 0 {
			break
		}
		for off := 0; off < n; {
			d := (*unix.Dirent)(unsafe.Pointer(&buf[off]))
			nameb := buf[off+direntNameOff : off+int(d.Reclen)]
			if i := indexNUL(nameb); i >= 0 {
				nameb = nameb[:i]
			}
			off += int(d.Reclen)
			if name := string(nameb); name != "." && name != ".." {
				out = append(out, dirent{name, d.Type})
			}
		}
	}
	return out, nil
}

// mayHang reports whether touching anything on m could block on a server:
// FUSE, network filesystems and autofs (which mounts on access).
func mayHang(m *Mount) bool {
	return m.FUSE || m.Network || m.FSType == "autofs" || m.FSType == "virtiofs" ||
		m.FSType == "gpfs" || m.FSType == "beegfs" || m.FSType == "gfs2" || m.FSType == "ocfs2"
}

// localFSTypes are the filesystems a walk enters when it finds one mounted
// inside the tree it scans. Anything else (FUSE, network, pseudo
// filesystems, overlay, whose layers are scanned where they live) is not
// entered.
var localFSTypes = map[string]bool{
	"tmpfs": true, "ramfs": true, "ext2": true, "ext3": true, "ext4": true, "xfs": true, "btrfs": true,
	"zfs": true, "f2fs": true, "vfat": true, "exfat": true, "ntfs3": true, "jfs": true, "reiserfs": true,
	"squashfs": true, "erofs": true, "iso9660": true, "udf": true, "bcachefs": true, "nilfs2": true,
}

// ErrNotScannable is wrapped when a root lies on a filesystem the walk must
// not touch.
var ErrNotScannable = errors.New("not scanned")

// openRoot opens a root directory for reading after checking, from the
// snapshot, that no mount on the way may hang.
func (w *walker) openRoot(r walkRoot) (fd, mnt int, err error) {
	p := path.Clean(r.Path)
	if !path.IsAbs(p) {
		return -1, 0, fmt.Errorf("scan root %q: not an absolute path", r.Path)
	}
	if m := w.hangsOnTheWay(p); m != nil {
		return -1, 0, fmt.Errorf("%w: %s lies on %s (%s, mount %d), which could hang", ErrNotScannable, p, m.Mountpoint, m.FSType, m.ID)
	}
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_MAGICLINKS}
	if r.InRoot {
		how.Resolve |= unix.RESOLVE_IN_ROOT
	} else {
		how.Resolve |= unix.RESOLVE_NO_SYMLINKS
	}
	rel := strings.TrimPrefix(p, "/")
	if rel == "" {
		rel = "."
	}
	pfd, err := unix.Openat2(w.hostFD, rel, &how)
	if err != nil {
		if errors.Is(err, unix.ELOOP) && !r.InRoot {
			return -1, 0, fmt.Errorf("scan root %s: a component is a symlink; give the real path (mount points are real paths): %w", p, err)
		}
		return -1, 0, fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(pfd)
	mnt, err = mountID(pfd)
	if err != nil {
		return -1, 0, fmt.Errorf("statx %s: %w", p, err)
	}
	m := w.byID[mnt]
	if m == nil {
		return -1, 0, fmt.Errorf("%w: %s is on mount %d, which is not in the mount table read", ErrNotScannable, p, mnt)
	}
	if mayHang(m) {
		return -1, 0, fmt.Errorf("%w: %s is on %s (%s, mount %d), which could hang", ErrNotScannable, p, m.Mountpoint, m.FSType, m.ID)
	}
	fd, err = unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("open %s: %w", p, err)
	}
	return fd, mnt, nil
}

// hangsOnTheWay returns a mount that may hang among those a lookup of the
// clean absolute path p passes through: the mounts at p and at every
// directory above it, "/" included, nearest first. It costs one map lookup
// per path component, whatever the size of the table: a pass opens one root
// per pod, and a loop over every mount point per root (what this replaced)
// made a pass cost pods × mounts, 12 s at 10,000 mounts (issue 11).
func (w *walker) hangsOnTheWay(p string) *Mount {
	for {
		w.mountLookups++
		for _, m := range w.mounts[p] {
			if mayHang(m) {
				return m
			}
		}
		if p == "/" {
			return nil
		}
		if i := strings.LastIndexByte(p, '/'); i > 0 {
			p = p[:i]
		} else {
			p = "/"
		}
	}
}

// mountID reads the mount id of an open descriptor without asking the
// filesystem (AT_STATX_DONT_SYNC: FUSE and NFS answer from their cache).
func mountID(fd int) (int, error) {
	var st unix.Statx_t
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC|unix.AT_NO_AUTOMOUNT, unix.STATX_MNT_ID, &st)
	if err != nil {
		return 0, err
	}
	return int(st.Mnt_id), nil
}

// openChild opens subdirectory name of dirfd (logical path p) if the walk
// may enter it, or returns -1.
func (w *walker) openChild(dirfd, parentMnt int, name, p string, depth int) (fd, mnt int) {
	if depth > w.limits.MaxDepth {
		w.tooDeep++
		return -1, 0
	}
	expect := map[int]bool{parentMnt: true}
	w.mountLookups++
	if ms, ok := w.mounts[p]; ok {
		// A mount point: decided by the snapshot, before any syscall.
		for _, m := range ms {
			if mayHang(m) || !localFSTypes[m.FSType] {
				w.skippedMounts++
				return -1, 0
			}
			expect[m.ID] = true
		}
	}
	pfd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		w.noteErr(p, err)
		return -1, 0
	}
	defer unix.Close(pfd)
	mnt, err = mountID(pfd)
	if err != nil {
		w.noteErr(p, err)
		return -1, 0
	}
	if !expect[mnt] {
		// Mounted after the snapshot was taken: not entered until a
		// snapshot says what it is.
		w.skippedMounts++
		return -1, 0
	}
	fd, err = unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		w.noteErr(p, err)
		return -1, 0
	}
	return fd, mnt
}

func (w *walker) noteErr(p string, err error) {
	if errors.Is(err, unix.ENOENT) {
		return // removed while we walked: pods come and go
	}
	w.walkErrors++
	w.lastErr = p + ": " + err.Error()
}

// spend accounts for one entry; false means stop here (budget, rate
// deadline or cancellation).
func (w *walker) spend() bool {
	if w.left == 0 {
		return false
	}
	if w.done&255 == 0 {
		if err := w.ctx.Err(); err != nil {
			w.stopErr = err
			return false
		}
		if w.limits.Rate > 0 {
			due := w.started.Add(time.Duration(float64(w.done) / w.limits.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-w.ctx.Done():
					t.Stop()
					w.stopErr = w.ctx.Err()
					return false
				}
			}
		}
	}
	if w.left > 0 {
		w.left--
	}
	w.done++
	w.stats.Entries++
	return true
}

// direntNameOff is where the name starts in a linux_dirent64.
var direntNameOff = int(unsafe.Offsetof(unix.Dirent{}.Name))

// walkDir walks the open directory fd (logical path p, relative path rel
// below root) from resume, and closes nothing: the caller owns fd. It
// returns true when the walk stopped and w.cursor says where.
func (w *walker) walkDir(fd, mnt int, p, rel string, depth int, resume []cursorLevel) (stopped bool) {
	var pos int64
	if len(resume) > 0 {
		cur := resume[0]
		if cur.child != "" {
			if w.descend(fd, mnt, p, rel, depth, cur.child, resume[1:]) {
				w.setCursor(depth, cursorLevel{off: cur.off, child: cur.child})
				return true
			}
		}
		if cur.off != 0 {
			if _, err := unix.Seek(fd, cur.off, 0); err != nil {
				w.noteErr(p, err)
				return false
			}
			pos = cur.off
		}
	}
	buf := make([]byte, 32<<10)
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
			d := (*unix.Dirent)(unsafe.Pointer(&buf[off]))
			reclen := int(d.Reclen)
			nameb := buf[off+direntNameOff : off+reclen]
			if i := indexNUL(nameb); i >= 0 {
				nameb = nameb[:i]
			}
			off += reclen
			name := string(nameb)
			if name == "." || name == ".." {
				pos = d.Off
				continue
			}
			if !w.spend() {
				w.setCursor(depth, cursorLevel{off: pos})
				return true
			}
			cp := p + "/" + name
			if p == "/" {
				cp = "/" + name
			}
			crel := name
			if rel != "" {
				crel = rel + "/" + name
			}
			typ := d.Type
			if typ == unix.DT_UNKNOWN {
				var st unix.Statx_t
				if err := unix.Statx(fd, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_DONT_SYNC|unix.AT_NO_AUTOMOUNT,
					unix.STATX_TYPE, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
					typ = unix.DT_DIR
				}
			}
			e := entry{w: w, dirfd: fd, mnt: mnt, name: name, typ: typ, path: cp, root: w.next, rel: crel, depth: depth + 1}
			if w.visit(&e) && typ == unix.DT_DIR {
				if w.descend(fd, mnt, p, rel, depth, name, nil) {
					w.setCursor(depth, cursorLevel{off: d.Off, child: name})
					return true
				}
			}
			pos = d.Off
		}
	}
}

// descend walks subdirectory name of fd; true when the walk stopped inside.
func (w *walker) descend(fd, mnt int, p, rel string, depth int, name string, resume []cursorLevel) bool {
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
func (w *walker) setCursor(depth int, c cursorLevel) {
	if !w.cursorSet {
		w.cursor, w.cursorSet = make([]cursorLevel, depth+1), true
	}
	w.cursor[depth] = c
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// ----- xattrs, read relative to the parent's descriptor, never following a
// symlink.

// Syscall numbers of listxattrat and getxattrat (Linux 6.13, the same on
// every architecture).
const (
	sysGetxattrat  = 464
	sysListxattrat = 465
)

// noXattrAt is set once getxattrat/listxattrat (Linux 6.13) are found
// missing: ENOSYS from an older kernel, or EPERM from a seccomp profile that
// predates them (containerd's RuntimeDefault answers unknown syscalls with
// EPERM). Neither call returns EPERM otherwise; the l*xattr fallback then
// reports any real error.
var noXattrAt atomic.Bool

// procPath names an entry through our own descriptor of its directory; the
// only component resolved is name, with the *xattr "l" calls not following
// it.
func (e *entry) procPath() string {
	return e.w.procfs + "/self/fd/" + strconv.Itoa(e.dirfd) + "/" + e.name
}

// listXattrs returns the entry's xattr names.
func (e *entry) listXattrs() ([]string, error) {
	if len(e.w.xbuf) == 0 {
		e.w.xbuf = make([]byte, 4096)
	}
	buf := e.w.xbuf
	for {
		n, err := e.listxattr(buf)
		if err == unix.ERANGE && len(buf) < 64<<10 {
			buf = make([]byte, 64<<10) // XATTR_LIST_MAX
			continue
		}
		if err != nil {
			if err == unix.ENOTSUP || err == unix.ENODATA {
				return nil, nil
			}
			return nil, err
		}
		var names []string
		for rest := buf[:n]; len(rest) > 0; {
			i := indexNUL(rest)
			if i < 0 {
				i = len(rest)
			}
			if i > 0 {
				names = append(names, string(rest[:i]))
			}
			rest = rest[min(i+1, len(rest)):]
		}
		return names, nil
	}
}

func (e *entry) listxattr(buf []byte) (int, error) {
	if err := e.guard(); err != nil {
		return 0, err
	}
	if !noXattrAt.Load() {
		name, err := unix.BytePtrFromString(e.name)
		if err != nil {
			return 0, err
		}
		var p unsafe.Pointer
		if len(buf) > 0 {
			p = unsafe.Pointer(&buf[0])
		}
		n, _, errno := unix.Syscall6(sysListxattrat, uintptr(e.dirfd), uintptr(unsafe.Pointer(name)),
			unix.AT_SYMLINK_NOFOLLOW, uintptr(p), uintptr(len(buf)), 0)
		if errno != unix.ENOSYS && errno != unix.EPERM {
			if errno != 0 {
				return 0, errno
			}
			return int(n), nil
		}
		noXattrAt.Store(true)
	}
	return unix.Llistxattr(e.procPath(), buf)
}

// xattrArgs is struct xattr_args of getxattrat.
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

// getXattr returns the value of xattr attr, or nil when it is not set.
func (e *entry) getXattr(attr string) ([]byte, error) {
	buf := make([]byte, 64)
	n, err := e.getxattr(attr, buf)
	if err == unix.ERANGE {
		buf = make([]byte, 64<<10)
		n, err = e.getxattr(attr, buf)
	}
	switch err {
	case nil:
		return buf[:n], nil
	case unix.ENODATA, unix.ENOTSUP:
		return nil, nil
	}
	return nil, err
}

func (e *entry) getxattr(attr string, buf []byte) (int, error) {
	if err := e.guard(); err != nil {
		return 0, err
	}
	if !noXattrAt.Load() {
		name, err := unix.BytePtrFromString(e.name)
		if err != nil {
			return 0, err
		}
		an, err := unix.BytePtrFromString(attr)
		if err != nil {
			return 0, err
		}
		args := xattrArgs{value: uint64(uintptr(unsafe.Pointer(&buf[0]))), size: uint32(len(buf))}
		n, _, errno := unix.Syscall6(sysGetxattrat, uintptr(e.dirfd), uintptr(unsafe.Pointer(name)),
			unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(an)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
		if errno != unix.ENOSYS && errno != unix.EPERM {
			if errno != 0 {
				return 0, errno
			}
			return int(n), nil
		}
		noXattrAt.Store(true)
	}
	return unix.Lgetxattr(e.procPath(), attr, buf)
}

// ErrNoTrustedXattrs is reported by the scanning checks when this process
// lacks CAP_SYS_ADMIN: the kernel then hides trusted.* xattrs without an
// error, so a scan for trusted.overlay.* would see nothing and look healthy.
var ErrNoTrustedXattrs = errors.New("trusted.overlay.* xattrs are invisible without CAP_SYS_ADMIN; only user.overlay.* were checked")

// trustedXattrsVisible reports whether this process can read trusted.*
// xattrs: CAP_SYS_ADMIN in its effective set.
func trustedXattrsVisible() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_SYS_ADMIN/32].Effective&(1<<(unix.CAP_SYS_ADMIN%32)) != 0
}
