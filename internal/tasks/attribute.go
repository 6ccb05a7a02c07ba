package tasks

import (
	"cmp"
	"os"
	"path/filepath"
	"strconv"

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
		w, err := probe.FuseWaiting(dir, int(n))
		if err != nil {
			continue
		}
		// The kernel's dev_t: major in the top 12 bits, minor in the low 20.
		out[strconv.FormatUint(n>>20, 10)+":"+strconv.FormatUint(n&0xfffff, 10)] = w
	}
	return out, true
}
