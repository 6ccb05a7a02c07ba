package tasks

import (
	"cmp"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
)

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

// attributeRest attributes the FUSE waits no descriptor named (a lookup
// of a path: stat, open, ls of a name) to a connection where only one can
// be meant. The candidates are the FUSE connections with requests waiting
// (fusectl) and those the probe found hung (the prober knows it without
// fusectl). A task in a pod is narrowed to the connections of its pod's
// volumes, and a task in a mount namespace of its own (a container) to the
// FUSE connections mounted there; with one candidate left, that is it.
func (x *scan) attributeRest() {
	cands := map[string]bool{}
	for c, n := range x.waiting {
		if n > 0 {
			cands[c] = true
		}
	}
	fromFusectl := len(cands)
	for c := range x.hung {
		cands[c] = true
	}
	var podConns map[string]map[string]bool // by pod UID, made on first need
	for i := range x.tasks {
		t := &x.tasks[i]
		if t.Conn != "" || t.Family != FamilyFUSE || len(cands) == 0 {
			continue
		}
		if c, ok := only(cands, nil); ok {
			t.Conn, t.By = c, "probe"
			if fromFusectl > 0 {
				t.By = "fusectl"
			}
			continue
		}
		if t.Pod != nil {
			if podConns == nil {
				podConns = x.podFUSEConns()
			}
			if c, ok := only(cands, podConns[t.Pod.UID]); ok {
				t.Conn, t.By = c, "pod_volume"
				continue
			}
		}
		if c, ok := only(cands, x.nsFUSEConns(t.PID)); ok {
			t.Conn, t.By = c, "mount_namespace"
		}
	}
}

// only returns the one candidate that is also in within (every candidate
// when within is nil), if there is exactly one.
func only(cands, within map[string]bool) (string, bool) {
	one, n := "", 0
	for c := range cands {
		if within == nil || within[c] {
			one, n = c, n+1
		}
	}
	return one, n == 1
}

// podFUSEConns are the FUSE connections of each pod's volumes and subPaths
// in the inspected table, by pod UID.
func (x *scan) podFUSEConns() map[string]map[string]bool {
	out := map[string]map[string]bool{}
	if x.snap == nil {
		return out
	}
	for _, m := range x.snap.Mounts {
		if m.Kube == nil || m.Kube.PodUID == "" || fstypeFamily(m.FSType) != FamilyFUSE {
			continue
		}
		if out[m.Kube.PodUID] == nil {
			out[m.Kube.PodUID] = map[string]bool{}
		}
		out[m.Kube.PodUID][m.Dev()] = true
	}
	return out
}

// nsFUSEConns are the FUSE connections mounted in the mount namespace of
// process pid, or nil when it is the inspected one (it says nothing more)
// or its table cannot be read.
func (x *scan) nsFUSEConns(pid int) map[string]bool {
	ns, table := x.nsTable(pid)
	if insp := x.inspectedNS(); table == nil || ns == "" || insp == "" || ns == insp {
		return nil
	}
	out := map[string]bool{}
	for _, m := range table {
		if fstypeFamily(m.FSType) == FamilyFUSE {
			out[m.Dev()] = true
		}
	}
	return out
}

// inspectedNS is the mount namespace link of the inspected table's
// process (the one the snapshot was read from), "" when unknown.
func (x *scan) inspectedNS() string {
	if x.inspNS == nil {
		ns := ""
		pid := "self"
		if x.snap != nil && x.snap.Host.PID > 0 {
			pid = strconv.Itoa(x.snap.Host.PID)
		}
		if l, err := os.Readlink(filepath.Join(x.proc, pid, "ns", "mnt")); err == nil {
			ns = l
		}
		x.inspNS = &ns
	}
	return *x.inspNS
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
	_, table := x.nsTable(pid)
	return table[id]
}

// nsTable is the mount table of process pid's mount namespace, read once
// per namespace, and the namespace's link ("" when unreadable).
func (x *scan) nsTable(pid int) (string, map[int]*mounts.Mount) {
	pdir := filepath.Join(x.proc, strconv.Itoa(pid))
	ns, err := os.Readlink(filepath.Join(pdir, "ns", "mnt"))
	key := ns
	if err != nil {
		ns, key = "", "pid:"+strconv.Itoa(pid)
	}
	table, ok := x.nsTables[key]
	if !ok {
		table = map[int]*mounts.Mount{}
		if f, err := os.Open(filepath.Join(pdir, "mountinfo")); err == nil {
			ms, _, _, _ := mounts.ParseMountTableLimit(f, maxMountinfoBytes)
			f.Close()
			for _, m := range ms {
				table[m.ID] = m
			}
		}
		x.nsTables[key] = table
	}
	return ns, table
}

// readFusectl reads the waiting count of every FUSE connection, by
// major:minor, and reports whether fusectl could be read: dir must be a
// fusectl mount (an empty directory where it is not mounted says nothing,
// least of all that nothing waits). fusectl names a connection by its
// device number, which for FUSE's anonymous devices (major 0) is the minor.
func readFusectl(dir string, anyDir bool) (map[string]int, bool) {
	if !anyDir {
		var sfs unix.Statfs_t
		if unix.Statfs(dir, &sfs) != nil || sfs.Type != fusectlMagic {
			return nil, false
		}
	}
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
		w, err := probe.FuseWaiting(dir, int(n))
		if err != nil {
			continue
		}
		// The kernel's dev_t: major in the top 12 bits, minor in the low 20.
		out[strconv.FormatUint(n>>20, 10)+":"+strconv.FormatUint(n&0xfffff, 10)] = w
	}
	return out, true
}

// fusectlMagic is fusectl's statfs f_type (FUSE_CTL_SUPER_MAGIC).
const fusectlMagic = 0x65735543
