package check

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/beneath"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/tableread"
)

// HiddenEntries is the ID of HiddenEntriesCheck.
const HiddenEntries finding.ID = "hidden_entries"

var hiddenEntriesDecl = Decl{
	// NeedsLive, not NeedsRoot: the directories are reached through this
	// process's own mount namespace, never the inspected root.
	ID: HiddenEntries, Kind: finding.ScanCheck, Needs: NeedsLive, Order: 80,
	MessageID:  "27d04e4a948e40cc8062c66d24f8581c",
	Severities: []finding.Severity{finding.Warning},
	New:        func(*Config) Check { return &HiddenEntriesCheck{} },
}

func init() { Register(hiddenEntriesDecl) }

// Defaults of HiddenEntriesCheck.
const (
	DefaultHiddenMaxEntries = 1000 // entries read per directory underneath
	hiddenNamesShown        = 5
)

// HiddenEntriesCheck finds FUSE and network mounts, and kubelet pod volume
// and CSI staging mounts, made over a directory that is not empty: the
// files in it are hidden under the mount, not gone (F7). ceph-fuse
// restarted with -o nonempty does that over what the old mount left; a pod
// that wrote into its volume directory while the volume was not mounted
// (its writes went to the node's disk) has them hidden once the volume is
// mounted again.
//
// It looks through a detached clone of the parent mount without submounts
// (package beneath), made in this process's own mount namespace: the
// kernel clones no other. For another namespace (--target.pid) it reaches
// the parent's filesystem through a mount of the same filesystem in its
// own namespace that shows the directory (the systemd unit's namespace is
// a copy of the host's); where there is none (a DaemonSet's container) the
// check is skipped with that cause. It never touches a filesystem that may
// hang (the parent itself FUSE or network, or such a mount on the way to
// it), follows no symlink and reads at most MaxEntries entries a mount.
type HiddenEntriesCheck struct {
	// MaxEntries is the most entries read from one directory underneath
	// (0: DefaultHiddenMaxEntries).
	MaxEntries int
	// OwnTable is this process's mount table (/proc/self/mountinfo when
	// empty), read when the inspected namespace is another process's.
	OwnTable string
}

// Decl implements Check.
func (*HiddenEntriesCheck) Decl() Decl { return hiddenEntriesDecl }

// hiddenCandidate is a mount whose directory underneath is to be looked at:
// parent is the mount it sits in, and dir that directory's path inside the
// parent's filesystem (from the parent's root field).
type hiddenCandidate struct {
	m, parent *mounts.Mount
	dir       string
}

// hiddenCandidates returns the mounts whose directory underneath the check
// looks at, with where that directory is: FUSE and network mounts and
// kubelet pod volume and CSI staging mounts, whose parent is a filesystem
// that cannot hang (not FUSE, network or autofs, and no such mount on the
// way to it) and not a kernel pseudo filesystem (the masks runtimes and
// systemd put over /proc and /sys entries). A mount stacked on another at
// the same mount point covers a whole mount, not a directory:
// shadowed_mount's business. Mounts meant to cover what is under them (/,
// systemd's tmpfs over /run and /tmp, a container's masks) are none of
// these kinds and never looked at. A pure function of the table.
func hiddenCandidates(s *mounts.Snapshot) []hiddenCandidate {
	var out []hiddenCandidate
	for _, m := range s.Mounts {
		kube := m.Kube != nil && (m.Kube.Kind == mounts.PodVolume || m.Kube.Kind == mounts.CSIStaging)
		if !m.FUSE && !m.Network && !kube {
			continue
		}
		if strings.HasSuffix(m.Mountpoint, mounts.DeletedMountSuffix) {
			continue
		}
		p := s.ByID[m.Parent]
		if p == nil || p == m || p.Mountpoint == m.Mountpoint || p.Pseudo() || p.MayHang() {
			continue
		}
		if o, _ := s.HangsOnTheWay(p.Mountpoint, nil); o != nil || (p.Overlay && overlayMayHang(s, p)) {
			continue
		}
		rel, ok := relBelow(p.Mountpoint, m.Mountpoint)
		if !ok || rel == "." {
			continue
		}
		dir := path.Join(strings.TrimSuffix(p.Root, mounts.DeletedRootSuffix), rel)
		if m.Dev() == p.Dev() && m.Root == dir {
			continue // a directory bound over itself hides nothing
		}
		out = append(out, hiddenCandidate{m: m, parent: p, dir: dir})
	}
	return out
}

// overlayMayHang reports whether listing a directory of overlay mount p
// could touch a filesystem that may hang: a layer on FUSE or NFS (or one
// whose options cannot be read, to be safe).
func overlayMayHang(s *mounts.Snapshot, p *mounts.Mount) bool {
	ch, err := mounts.ParseOverlayChain(p, snapshotRoot("", s))
	if err != nil {
		return true
	}
	for _, l := range append(ch.Layers, ch.Data...) {
		if o, _ := s.HangsOnTheWay(l.Dir, nil); o != nil {
			return true
		}
	}
	return false
}

// relBelow is p relative to dir when p is below it.
func relBelow(dir, p string) (string, bool) {
	if dir == "/" {
		return strings.TrimPrefix(p, "/"), strings.HasPrefix(p, "/") && p != "/"
	}
	rel, ok := strings.CutPrefix(p, dir+"/")
	return rel, ok && rel != ""
}

// reachUnderneath finds, in own (this process's mount table), a mount of
// the candidate parent's filesystem that shows the directory underneath:
// the same major:minor, a root that contains the directory, reachable by
// its mount point and with nothing that may hang on the way. It returns
// that mount and the directory's path below its root. For our own
// namespace it is the parent itself. A pure function of the two tables.
func reachUnderneath(c hiddenCandidate, own *mounts.Snapshot, same bool) (*mounts.Mount, string, bool) {
	if same {
		rel, _ := relBelow(c.parent.Mountpoint, c.m.Mountpoint)
		return c.parent, rel, true
	}
	var best *mounts.Mount
	bestRel := ""
	for _, o := range own.ByDev(c.parent.Dev()) {
		if o.MayHang() || strings.HasSuffix(o.Root, mounts.DeletedRootSuffix) || !own.Reachable(o) {
			continue
		}
		rel, ok := relBelow(o.Root, c.dir)
		if o.Root == c.dir {
			rel, ok = ".", true // a bind mount of that very directory
		}
		if !ok {
			continue
		}
		if h, _ := own.HangsOnTheWay(o.Mountpoint, nil); h != nil {
			continue
		}
		if best == nil || len(o.Root) > len(best.Root) {
			best, bestRel = o, rel
		}
	}
	return best, bestRel, best != nil
}

// hiddenFinding reports what a listing of the directory under m shows; ok
// is false when it is empty.
func hiddenFinding(c hiddenCandidate, l beneath.Listing) (finding.Finding, bool) {
	if len(l.Names) == 0 {
		return finding.Finding{}, false
	}
	count := strconv.Itoa(len(l.Names))
	if l.More {
		count += "+"
	}
	shown := l.Names[:min(len(l.Names), hiddenNamesShown)]
	m, p := c.m, c.parent
	names := strings.Join(shown, ", ")
	if len(l.Names) > len(shown) {
		names += ", ..."
	}
	var b strings.Builder
	fmt.Fprintf(&b, "The directory this mount was made over holds %s %s (%s), on %s (%s) mounted at %s: hidden under the mount, not gone, "+
		"and still taking space there. ", count, pluralWord(len(l.Names), "entry", "entries"), names, p.Source, p.FSType, p.Mountpoint)
	switch {
	case m.Kube != nil && m.Kube.Kind == mounts.PodVolume:
		fmt.Fprintf(&b, "Most likely pod %s wrote into volume %s while it was not mounted (the writes went to the node's disk), "+
			"or they were left from before a remount. ", podName(m.Kube), m.Kube.Volume)
	default:
		b.WriteString("Most likely they were left from before a remount: a FUSE server restarted with -o nonempty mounts over " +
			"what the old mount left, and a volume mounted again over files written while it was not mounted hides them. ")
	}
	fmt.Fprintf(&b, "To see them without unmounting: mount --bind %s /mnt/x (a bind mount without submounts) and look in /mnt/x/%s; "+
		"move what is needed into the mounted filesystem, then remove them there.", p.Mountpoint, strings.TrimPrefix(c.dir, strings.TrimSuffix(p.Root, "/")+"/"))
	f := newFinding(HiddenEntries, finding.Warning, m, b.String())
	f.Details = map[string]string{
		"hidden_entries":   count,
		"hidden_names":     quoted(shown),
		"underneath_mount": p.Mountpoint,
		"underneath_fs":    p.FSType,
	}
	return f, true
}

// quoted is names, each in Go quotes (unambiguous whatever a name holds),
// space separated.
func quoted(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, " ")
}

func pluralWord(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Errors and skip reasons of the check.
var (
	errHiddenOtherNamespace = &SkipError{Cause: "another mount namespace",
		Reason: "hidden_entries needs the filesystems under the inspected mounts mounted in mountwatchd's own mount namespace: " +
			"the kernel clones (open_tree) only mounts of the caller's namespace, and none of them is mounted here (a DaemonSet's container)"}
	errHiddenNoCap = &SkipError{Cause: "no CAP_SYS_ADMIN",
		Reason: "hidden_entries needs CAP_SYS_ADMIN to clone a mount (open_tree): no directory under a mount was checked"}
	errHiddenFiltered = &SkipError{Cause: "open_tree refused",
		Reason: "open_tree(2) was refused (EPERM) with CAP_SYS_ADMIN held: a system call filter blocks it; no directory under a mount was checked"}
)

// Run implements Check. Notes count the mounts left out because their
// parent filesystem is not mounted in our own namespace.
func (c *HiddenEntriesCheck) Run(ctx context.Context, env *Env) Outcome {
	found, notes, err := c.run(ctx, env.Snapshot)
	return Outcome{Findings: found, Notes: notes, Err: err}
}

func (c *HiddenEntriesCheck) run(ctx context.Context, s *mounts.Snapshot) ([]finding.Finding, []string, error) {
	cands := hiddenCandidates(s)
	if len(cands) == 0 {
		return nil, nil, nil
	}
	own, same, err := c.ownTable(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	r := &hiddenRun{max: c.MaxEntries, trees: map[int]*beneath.Tree{}, treeErrs: map[int]error{}}
	if r.max <= 0 {
		r.max = DefaultHiddenMaxEntries
	}
	defer r.close()
	for _, cand := range cands {
		if err := ctx.Err(); err != nil {
			r.errs = append(r.errs, fmt.Errorf("hidden_entries stopped: %w", context.Cause(ctx)))
			break
		}
		r.look(cand, own, same)
	}
	notes := r.judge()
	return r.out, notes, errors.Join(r.errs...)
}

// hiddenRun is one run's clones and tally.
type hiddenRun struct {
	max int
	// trees holds one clone per filesystem reached, not per mount: most
	// pod volumes sit in the kubelet root's filesystem, and a clone costs
	// an RCU grace period when it goes.
	trees    map[int]*beneath.Tree
	treeErrs map[int]error

	out                               []finding.Finding
	errs                              []error
	reached, notHere, refused, absent int
}

func (r *hiddenRun) close() {
	for _, t := range r.trees {
		t.Close()
	}
}

// tree is the clone of own mount o, made on first use.
func (r *hiddenRun) tree(o *mounts.Mount) (*beneath.Tree, error) {
	if t, ok := r.trees[o.ID]; ok {
		return t, nil
	}
	if err, ok := r.treeErrs[o.ID]; ok {
		return nil, err
	}
	t, err := beneath.Clone(o.Mountpoint, o.ID)
	if err != nil {
		r.treeErrs[o.ID] = err
		return nil, err
	}
	r.trees[o.ID] = t
	return t, nil
}

// look lists the directory under one candidate and counts how it went.
func (r *hiddenRun) look(cand hiddenCandidate, own *mounts.Snapshot, same bool) {
	o, rel, ok := reachUnderneath(cand, own, same)
	if !ok {
		r.notHere++
		return
	}
	r.reached++
	t, err := r.tree(o)
	var l beneath.Listing
	if err == nil {
		l, err = t.List(rel, r.max)
	}
	switch {
	case errors.Is(err, beneath.ErrNotPermitted):
		r.refused++
	case errors.Is(err, beneath.ErrNotDirectory), errors.Is(err, beneath.ErrMoved):
		r.absent++ // a file mounted over, or the table changed since it was read
	case err != nil:
		r.errs = append(r.errs, fmt.Errorf("%s: %w", cand.m.Mountpoint, err))
	default:
		if f, ok := hiddenFinding(cand, l); ok {
			r.out = append(r.out, f)
		}
	}
}

// judge turns the tally into skip reasons, errors and notes.
func (r *hiddenRun) judge() []string {
	switch {
	case r.refused > 0 && r.refused == r.reached && !hasCapSysAdmin():
		r.errs = append(r.errs, errHiddenNoCap)
	case r.refused > 0 && r.refused == r.reached:
		r.errs = append(r.errs, errHiddenFiltered)
	case r.refused > 0:
		r.errs = append(r.errs, fmt.Errorf("open_tree refused for %d of %d mounts", r.refused, r.reached))
	case r.reached == 0 && r.notHere > 0:
		r.errs = append(r.errs, errHiddenOtherNamespace)
	case r.notHere > 0:
		return []string{fmt.Sprintf("%d mounts left out: their parent filesystem is not mounted in mountwatchd's own namespace", r.notHere)}
	}
	return nil
}

// ownTable is this process's mount table and whether it is the inspected
// one (then the parents themselves are cloned).
// It is read within ctx's deadline (package tableread), parsed and indexed
// only; its unparsable lines are left out and not reported (the inspected
// table's are).
func (c *HiddenEntriesCheck) ownTable(ctx context.Context, s *mounts.Snapshot) (*mounts.Snapshot, bool, error) {
	if s.Host.PID == 0 && c.OwnTable == "" {
		return s, true, nil
	}
	name := c.OwnTable
	if name == "" {
		name = path.Join(s.Host.WithDefaults().Procfs, "self", "mountinfo")
	}
	own, err := (&tableread.Reader{Source: tableread.Own(name, s.Host.MaxTableBytes)}).Read(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("our own mount table: %w", err)
	}
	return own, false, nil
}

// hasCapSysAdmin reports whether CAP_SYS_ADMIN is in our effective set.
func hasCapSysAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_SYS_ADMIN/32].Effective&(1<<(unix.CAP_SYS_ADMIN%32)) != 0
}
