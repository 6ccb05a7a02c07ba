package check

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/podlive"
)

// UnmountedVolume is the ID of UnmountedVolumeCheck.
const UnmountedVolume finding.ID = "unmounted_volume"

// Defaults of UnmountedVolumeCheck.
const (
	// DefaultUnmountedGrace is how long a running pod's volume directory
	// may be seen without its mount before it is a finding. Kubelet's own
	// set-up and tear-down leave a volume directory unmounted only while
	// the pod's cgroup holds no process, and only for as long as one CSI
	// call (kubelet gives NodePublishVolume 2 minutes): 2m30s is longer
	// than that, so that even a slow publish racing a pod's first process
	// is never reported. The stand-in cycle of the tests (directory,
	// FUSE mount, unmount, directory removed) leaves the directory
	// unmounted for milliseconds; BENCHMARKS.md has the figure.
	DefaultUnmountedGrace = 150 * time.Second
	// DefaultCgroupRoot and DefaultContainerdState are where the node
	// keeps its cgroups and containerd its task state.
	DefaultCgroupRoot      = "/sys/fs/cgroup"
	DefaultContainerdState = "/run/containerd"
)

// Bounds of one run.
const (
	maxKubeletEntries = 200000 // directory entries read from kubelet's tree per run
	maxPlainEntries   = 10000  // entries counted inside one plain volume directory
	maxPlainDepth     = 32
)

// persistentPlugins are kubelet's in-tree volume plugins that always mount
// at pods/<uid>/volumes/<plugin>/<volume>: a directory of theirs without a
// mount is a volume that is not there. emptyDir, configMap, secret and the
// like are left out: an emptyDir is a plain directory by design.
var persistentPlugins = map[string]bool{
	"kubernetes.io~nfs": true, "kubernetes.io~cephfs": true, "kubernetes.io~glusterfs": true,
	"kubernetes.io~iscsi": true, "kubernetes.io~fc": true, "kubernetes.io~rbd": true,
	"kubernetes.io~azure-file": true, "kubernetes.io~azure-disk": true, "kubernetes.io~aws-ebs": true,
	"kubernetes.io~gce-pd": true, "kubernetes.io~cinder": true, "kubernetes.io~vsphere-volume": true,
	"kubernetes.io~portworx-volume": true, "kubernetes.io~local-volume": true,
}

var unmountedVolumeDecl = Decl{
	ID: UnmountedVolume, Kind: finding.ProbeCheck, Needs: NeedsLive | NeedsRoot, Order: 70,
	MessageID:  "27be16e602684267a14505a80e837d14",
	Severities: []finding.Severity{finding.Critical},
	New: func(cfg *Config) Check {
		return &UnmountedVolumeCheck{Grace: cfg.UnmountedGrace, CgroupRoot: cfg.CgroupRoot,
			ContainerdState: cfg.ContainerdState, Once: cfg.Once}
	},
}

func init() { Register(unmountedVolumeDecl) }

// UnmountedVolumeCheck finds volume directories of running pods that are
// not mounted: <kubelet>/pods/<uid>/volumes/kubernetes.io~csi/<volume>/mount
// with vol_data.json beside it (and the directory of an in-tree persistent
// plugin such as kubernetes.io~nfs) that is no mount point while the pod's
// cgroup holds a process, for longer than Grace; and a CSI staging directory
// (globalmount) that is no mount point while pod volumes bound from it are
// mounted. Whatever the pod writes there lands on the node's own disk.
//
// Whether the pod runs comes from the node (package podlive): its cgroup,
// or containerd's sandbox task. The time comes from the check's memory
// across runs (UnmountedState), each run every probe interval: a directory
// is reported once it was seen unmounted, with its pod running, in every run
// for Grace, the same directory (inode) all along. --once (Once) has one
// look and no memory: it reports a directory created (birth time, else
// ctime) more than Grace ago, and says that how long it has been unmounted
// is not known.
//
// It only reads, through the inspected root without following a symlink:
// kubelet's directories, never opened when a mount on their way may hang;
// a volume directory only after statx (AT_STATX_DONT_SYNC, asking no
// server) showed it is on the same mount as its parent; and the files
// written into it, counted without following symlinks or crossing into
// another mount, at most maxPlainEntries.
type UnmountedVolumeCheck struct {
	Grace                       time.Duration
	CgroupRoot, ContainerdState string // as the inspected node names them; "" for the defaults
	// Once is set for --once: one run, no memory.
	Once bool

	mu    sync.Mutex
	state UnmountedState
}

// UnmountedState is the check's memory from one run to the next: for each
// volume directory seen unmounted with its pod running, when it was first
// seen so and which directory (inode) it was.
type UnmountedState map[string]unmountedTrack

type unmountedTrack struct {
	since time.Time
	ino   uint64    // the directory's inode and birth: a directory removed
	born  time.Time // and made again is kubelet's next set-up, not the same
}

// Decl implements Check.
func (*UnmountedVolumeCheck) Decl() Decl { return unmountedVolumeDecl }

// plainDir is one volume directory found without its mount, as observed by
// one run.
type plainDir struct {
	path     string // as the inspected node names it
	kube     mounts.Kube
	bound    []*mounts.Mount // staging: the pod volume mounts bound from it
	pod      podlive.Pod     // pod volumes: whether the pod runs
	ino      uint64
	born     time.Time // birth time, else ctime
	bornKind string    // "birth time" or "ctime"
	files    plainCount
	holder   *mounts.Mount // the mount the directory is on
}

// plainFinder collects one run's volume directories without their mount.
type plainFinder struct {
	ctx  context.Context
	kt   *kubeletTree
	h    mounts.Host
	live *podlive.Reader
	// kf reads kubelet's files for the directories found, if any: listing
	// the pod log directory costs a getdents of every pod's.
	kf  *mounts.KubeFiles
	out []plainDir
}

func (f *plainFinder) close() {
	if f.kf != nil {
		f.kf.Close()
	}
}

// add looks at directory p (of kube context k; bound: for a staging
// directory, the pod volumes bound from it) and keeps it when its pod runs
// and it is a plain directory.
func (f *plainFinder) add(p string, k *mounts.Kube, bound []*mounts.Mount) {
	kt := f.kt
	if f.ctx.Err() != nil {
		return
	}
	if m, _ := kt.s.HangsOnTheWay(p, nil); m != nil {
		kt.note("hang", fmt.Sprintf("%s not looked at: %s (%s) on its way may hang", p, m.Mountpoint, m.FSType))
		return
	}
	d := plainDir{path: p, bound: bound}
	if k.Kind == mounts.PodVolume {
		d.pod = f.live.Pod(k.PodUID)
		switch d.pod.State {
		case podlive.Running:
		case podlive.Unknown:
			kt.note("unknown", fmt.Sprintf("pod %s: whether it runs is not known (%s), its unmounted volume %s not reported", k.PodUID, d.pod.Evidence, p))
			return
		default:
			return // kubelet sets it up or tears it down
		}
	}
	ok, err := kt.inspect(&d)
	if err != nil {
		kt.errs = append(kt.errs, err)
	}
	if !ok {
		return
	}
	if f.kf == nil {
		f.kf = mounts.OpenKubeFiles(f.h)
	}
	f.kf.Enrich(k, kt.kubelet, p)
	if k.Kind == mounts.CSIStaging && k.VolumeHandle == "" && len(bound) > 0 && bound[0].Kube != nil {
		k.VolumeHandle = bound[0].Kube.VolumeHandle
		if k.Volume == "" {
			k.Volume = bound[0].Kube.Volume
		}
	}
	d.kube = *k
	f.out = append(f.out, d)
}

// plainCount is what was written into a plain directory.
type plainCount struct {
	Files, Dirs int
	Bytes       int64
	Complete    bool // every entry was counted (within the bounds, no error)
}

// Run implements Check.
func (c *UnmountedVolumeCheck) Run(ctx context.Context, env *Env) Outcome {
	s := env.Snapshot
	grace := c.Grace
	if grace <= 0 {
		grace = DefaultUnmountedGrace
	}
	h := s.Host.WithDefaults()
	cg, cs := c.CgroupRoot, c.ContainerdState
	if cg == "" {
		cg = DefaultCgroupRoot
	}
	if cs == "" {
		cs = DefaultContainerdState
	}
	fs := h.FS()
	live := &podlive.Reader{Cgroup: fs.Path(cg), NodeCgroup: cg, Containerd: fs.Path(cs), NodeContainerd: cs}
	defer live.Close()
	dirs, notes, err := findPlainDirs(ctx, env.Root, s, h, live)

	c.mu.Lock()
	defer c.mu.Unlock()
	var prev UnmountedState
	if !c.Once {
		prev = c.state
	}
	found, next := JudgeUnmounted(dirs, prev, s.Taken, grace, c.Once)
	if !c.Once {
		c.state = next
	}
	if c.Once && len(dirs) > len(found) {
		notes = append(notes, plural(len(dirs)-len(found), "volume directory")+
			" of a running pod seen unmounted but created less than "+grace.String()+" ago: one look cannot tell an unmount from kubelet's set-up")
	}
	return Outcome{Findings: found, Err: err, Notes: notes}
}

// JudgeUnmounted is the check's decision, a function of one run's
// observations, the state after the previous run (nil: none), the run's
// time and the grace period. once judges from one look: a directory whose
// birth (or ctime) is older than grace. It returns the findings and the
// state for the next run: only the directories observed now, so a
// directory seen mounted, or its pod stopped, starts afresh.
func JudgeUnmounted(dirs []plainDir, prev UnmountedState, now time.Time, grace time.Duration, once bool) ([]finding.Finding, UnmountedState) {
	next := UnmountedState{}
	var out []finding.Finding
	for i := range dirs {
		d := &dirs[i]
		t, ok := prev[d.path]
		if !ok || t.ino != d.ino || !t.born.Equal(d.born) { // new, or removed and made again (kubelet's next set-up)
			t = unmountedTrack{since: now, ino: d.ino, born: d.born}
		}
		next[d.path] = t
		since, sinceKnown := t.since, !once
		if once {
			since = d.born
		}
		if since.IsZero() || now.Sub(since) < grace {
			continue
		}
		out = append(out, unmountedFinding(d, since, sinceKnown))
	}
	return out, next
}

func unmountedFinding(d *plainDir, since time.Time, sinceKnown bool) finding.Finding {
	var f finding.Finding
	if d.holder != nil {
		f = newFinding(UnmountedVolume, finding.Critical, d.holder, "")
	} else {
		f = finding.Finding{Check: UnmountedVolume, Severity: finding.Critical}
	}
	f.Path = d.path
	f.Directory = d.path
	f.Kube = d.kube
	ts := since.UTC().Format(time.RFC3339)
	var b strings.Builder
	on := "the node's own filesystem"
	if d.holder != nil {
		on = fmt.Sprintf("%s (%s from %s, mounted at %s)", on, d.holder.FSType, d.holder.Source, d.holder.Mountpoint)
	}
	driver := d.kube.CSIDriver
	if driver == "" {
		driver = d.kube.VolumePlugin
	}
	if d.kube.Kind == mounts.CSIStaging {
		fmt.Fprintf(&b, "The CSI staging directory of volume %s (driver %s, handle %s) is not mounted: %s is a plain directory on %s, "+
			"while %s bound from it still %s. Every new pod of this volume gets the plain directory, and its writes land on the node's disk. ",
			orUnknown(d.kube.Volume), orUnknown(driver), orUnknown(d.kube.VolumeHandle), d.path, on,
			plural(len(d.bound), "pod volume"), map[bool]string{true: "is mounted", false: "are mounted"}[len(d.bound) == 1])
	} else {
		fmt.Fprintf(&b, "Volume %s (driver %s) of pod %s is not mounted: %s is a plain directory on %s while the pod runs (%s). "+
			"What the pod writes there lands on the node's disk, and it does not see the volume's data. ",
			orUnknown(d.kube.Volume), orUnknown(driver), podName(&d.kube), d.path, on, d.pod.Evidence)
	}
	switch {
	case d.files.Files == 0 && d.files.Dirs == 0 && d.files.Complete:
		b.WriteString("Nothing was written into it yet. ")
	default:
		more := ""
		if !d.files.Complete {
			more = "at least "
		}
		dirs := ""
		switch {
		case d.files.Dirs == 1:
			dirs = " in 1 directory"
		case d.files.Dirs > 1:
			dirs = fmt.Sprintf(" in %d directories", d.files.Dirs)
		}
		fmt.Fprintf(&b, "Written into the plain directory: %s%s (%s)%s. ", more, plural(d.files.Files, "file"),
			byteSize(d.files.Bytes), dirs)
	}
	if sinceKnown {
		fmt.Fprintf(&b, "Seen unmounted since %s. ", ts)
	} else {
		fmt.Fprintf(&b, "One look cannot tell since when it has been unmounted; the directory dates from %s (its %s). ", ts, d.bornKind)
	}
	if d.kube.Kind == mounts.CSIStaging {
		b.WriteString("Fix: restart the CSI node plugin so it stages the volume again, then restart the pods using it.")
	} else {
		fmt.Fprintf(&b, "Fix: copy what was written out of %s if it matters, then delete the pod so kubelet mounts the volume again; "+
			"the CSI node plugin's log says why the mount went away.", d.path)
	}
	f.Message = b.String()
	f.Details = map[string]string{
		"files":          strconv.Itoa(d.files.Files),
		"directories":    strconv.Itoa(d.files.Dirs),
		"bytes":          strconv.FormatInt(d.files.Bytes, 10),
		"count_complete": strconv.FormatBool(d.files.Complete),
	}
	if sinceKnown {
		f.Details["unmounted_since"] = ts
	} else {
		f.Details["directory_since"] = ts
	}
	if d.pod.Evidence != "" {
		f.Details["pod_state"] = string(d.pod.State) + ": " + d.pod.Evidence
	}
	if len(d.bound) > 0 {
		f.Details["bound_pod_volumes"] = strconv.Itoa(len(d.bound))
	}
	return f
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return strconv.FormatInt(n, 10) + " bytes"
}
