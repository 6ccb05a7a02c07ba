package check

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/podlive"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// This file is unmounted_volume's reading of the node: kubelet's volume
// directories that are no mount point, each looked at without following a
// symlink, crossing a mount or touching one that may hang.

// kubeletTree reads kubelet's directories for one run: the candidates
// (volume directories that are no mount point in the table) and whether
// each may be touched.
type kubeletTree struct {
	root    *mounts.Root
	s       *mounts.Snapshot
	kubelet string // the kubelet root, as the node names it
	hang    map[string]*mounts.Mount
	entries int
	notes   []string       // the first note of each kind
	order   []string       // their kinds
	kinds   map[string]int // notes of each kind
	errs    []error
}

// findPlainDirs lists the volume directories that should be mount points
// and are not, each with what the node says about it: its pod, its inode
// and birth, and what was written into it; under every kubelet root of s
// (s.KubeletRoots), within one entry budget for them all.
func findPlainDirs(ctx context.Context, root *mounts.Root, s *mounts.Snapshot, h mounts.Host, live *podlive.Reader) ([]plainDir, []string, error) {
	f := &plainFinder{ctx: ctx, h: h, live: live}
	defer f.close()
	var notes []string
	var errs []error
	entries := 0
	for _, kubelet := range s.KubeletRoots() {
		kt := &kubeletTree{root: root, s: s, kubelet: path.Clean(kubelet), hang: map[string]*mounts.Mount{}, entries: entries}
		n, err := f.walk(kt)
		entries = kt.entries
		notes = append(notes, n...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return f.out, notes, errors.Join(errs...)
}

// walk adds the plain volume directories under kt's kubelet root.
func (f *plainFinder) walk(kt *kubeletTree) ([]string, error) {
	kubelet, s := kt.kubelet, kt.s
	if m, _ := s.HangsOnTheWay(kubelet, nil); m != nil {
		return nil, fmt.Errorf("kubelet's directory %s is on or below %s (%s), which may hang: not read", kubelet, m.Mountpoint, m.FSType)
	}
	prefix := kubelet + "/"
	for _, m := range s.Mounts {
		if m.MayHang() && strings.HasPrefix(m.Mountpoint, prefix) {
			kt.hang[m.Mountpoint] = m
		}
	}
	kfd, err := kt.openDir(-1, kubelet)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return []string{"no kubelet directory " + kubelet}, nil
		}
		return nil, fmt.Errorf("open kubelet's directory %s: %w", kubelet, err)
	}
	defer unix.Close(kfd)
	f.kt = kt
	kt.podVolumes(kfd, f.add)
	kt.staging(kfd, f.add)
	return kt.allNotes(), errors.Join(kt.errs...)
}

// note records a note of a kind; each kind says its first and counts the
// rest, so that a node of many pods gets a reason of bounded length.
func (kt *kubeletTree) note(kind, text string) {
	if kt.kinds == nil {
		kt.kinds = map[string]int{}
	}
	if kt.kinds[kind]++; kt.kinds[kind] == 1 {
		kt.notes = append(kt.notes, text)
		kt.order = append(kt.order, kind)
	}
}

func (kt *kubeletTree) allNotes() []string {
	out := slices.Clone(kt.notes)
	for i, kind := range kt.order {
		if n := kt.kinds[kind]; n > 1 {
			out[i] += fmt.Sprintf(" (and %d more like it)", n-1)
		}
	}
	return out
}

// openDir opens directory name below dirfd (a path of the node from the
// root when dirfd < 0) for reading, following no symlink. Callers check
// that it is not a mount that may hang first.
func (kt *kubeletTree) openDir(dirfd int, name string) (int, error) {
	if dirfd < 0 {
		fd, err := kt.root.Open(name, unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
		if err != nil {
			return -1, err
		}
		defer unix.Close(fd)
		return unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	return unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// subdirs lists the directories in dirfd, opened for it (by the type
// getdents reports, else statx's, asking no server), within the run's
// entry budget.
func (kt *kubeletTree) subdirs(dirfd int, p string) []string {
	left := maxKubeletEntries - kt.entries
	if left <= 0 {
		return nil
	}
	ents, err := walk.ReadDir(dirfd, left)
	kt.entries += len(ents)
	if kt.entries >= maxKubeletEntries {
		kt.note("budget", fmt.Sprintf("stopped at %d entries of kubelet's directories", maxKubeletEntries))
	}
	if err != nil && len(ents) == 0 {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.Typ == unix.DT_UNKNOWN {
			var st unix.Statx_t
			if unix.Statx(dirfd, e.Name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_DONT_SYNC|unix.AT_NO_AUTOMOUNT, unix.STATX_TYPE, &st) == nil &&
				st.Mode&unix.S_IFMT == unix.S_IFDIR {
				e.Typ = unix.DT_DIR
			}
		}
		if e.Typ == unix.DT_DIR {
			out = append(out, e.Name)
		}
	}
	return out
}

// child opens directory name in dirfd, the node path p/name, unless it is a
// mount point that may hang.
func (kt *kubeletTree) child(dirfd int, p, name string) (int, string, bool) {
	cp := p + "/" + name
	if kt.hang[cp] != nil {
		return -1, cp, false
	}
	fd, err := kt.openDir(dirfd, name)
	return fd, cp, err == nil
}

// grandchild opens directory name/sub in dirfd, the node path p/name/sub,
// unless either is a mount point that may hang: in one openat2 that
// follows no symlink and stays below dirfd where the kernel allows it.
func (kt *kubeletTree) grandchild(dirfd int, p, name, sub string) (int, string, bool) {
	cp, gp := p+"/"+name, p+"/"+name+"/"+sub
	if kt.hang[cp] != nil || kt.hang[gp] != nil {
		return -1, gp, false
	}
	fd, err := unix.Openat2(dirfd, name+"/"+sub, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
		return fd, gp, err == nil
	}
	cfd, _, ok := kt.child(dirfd, p, name) // a system call filter refused openat2
	if !ok {
		return -1, gp, false
	}
	defer unix.Close(cfd)
	return kt.child(cfd, cp, sub)
}

func (kt *kubeletTree) mounted(p string) bool { return len(kt.s.ByMountpoint(p)) > 0 }

// podVolumes walks pods/<uid>/volumes/<plugin>/<volume> for CSI volumes
// (with vol_data.json) and persistent in-tree plugins.
func (kt *kubeletTree) podVolumes(kfd int, add func(string, *mounts.Kube, []*mounts.Mount)) {
	pfd, pods, ok := kt.child(kfd, kt.kubelet, "pods")
	if !ok {
		return
	}
	defer unix.Close(pfd)
	for _, uid := range kt.subdirs(pfd, pods) {
		vfd, vp, ok := kt.grandchild(pfd, pods, uid, "volumes")
		if !ok {
			continue
		}
		for _, plugin := range kt.subdirs(vfd, vp) {
			if plugin != mounts.CsiPlugin && !persistentPlugins[plugin] {
				continue
			}
			plfd, plp, ok := kt.child(vfd, vp, plugin)
			if !ok {
				continue
			}
			for _, vol := range kt.subdirs(plfd, plp) {
				p := plp + "/" + vol
				if plugin == mounts.CsiPlugin {
					if !regularAt(plfd, vol+"/vol_data.json") {
						continue
					}
					p += "/mount"
				}
				if kt.mounted(p) {
					continue
				}
				if k := mounts.ParseKubePath(kt.kubelet, p); k != nil {
					add(p, k, nil)
				}
			}
			unix.Close(plfd)
		}
		unix.Close(vfd)
	}
}

// staging walks plugins/kubernetes.io/csi/<driver>/<sha256 of the volume
// handle>/globalmount for staging directories that are no mount point while
// pod volumes of that handle are mounted.
func (kt *kubeletTree) staging(kfd int, add func(string, *mounts.Kube, []*mounts.Mount)) {
	bound := map[string][]*mounts.Mount{} // <driver>/<sha256(handle)>
	for _, m := range kt.s.Mounts {
		if k := m.Kube; k != nil && k.Kind == mounts.PodVolume && k.VolumePlugin == mounts.CsiPlugin && k.VolumeHandle != "" {
			sum := sha256.Sum256([]byte(k.VolumeHandle))
			key := k.CSIDriver + "/" + hex.EncodeToString(sum[:])
			bound[key] = append(bound[key], m)
		}
	}
	if len(bound) == 0 {
		return
	}
	fd, p := kfd, kt.kubelet
	for _, name := range []string{"plugins", "kubernetes.io", "csi"} {
		nfd, np, ok := kt.child(fd, p, name)
		if fd != kfd {
			unix.Close(fd)
		}
		if !ok {
			return
		}
		fd, p = nfd, np
	}
	defer unix.Close(fd)
	for _, driver := range kt.subdirs(fd, p) {
		dfd, dp, ok := kt.child(fd, p, driver)
		if !ok {
			continue
		}
		for _, sum := range kt.subdirs(dfd, dp) {
			b := bound[driver+"/"+sum]
			gp := dp + "/" + sum + "/globalmount"
			if len(b) == 0 || kt.mounted(gp) {
				continue
			}
			if k := mounts.ParseKubePath(kt.kubelet, gp); k != nil {
				add(gp, k, b)
			}
		}
		unix.Close(dfd)
	}
}

// regularAt reports whether name below dirfd is a regular file, following
// no symlink.
func regularAt(dirfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG
}

const statxWant = unix.STATX_TYPE | unix.STATX_MNT_ID | unix.STATX_INO | unix.STATX_BTIME | unix.STATX_CTIME

// inspect looks at d's directory itself: that it is a directory on the same
// mount as its parent now (it may have been mounted since the table was
// read), its inode and birth, and what was written into it. It returns
// false when the directory is not (or no longer) a plain one.
func (kt *kubeletTree) inspect(d *plainDir) (bool, error) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	parent, err := kt.root.Open(path.Dir(d.path), how)
	if err != nil {
		return false, nil // gone since it was listed
	}
	defer unix.Close(parent)
	var pst, st unix.Statx_t
	if err := unix.Statx(parent, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, unix.STATX_MNT_ID, &pst); err != nil {
		return false, fmt.Errorf("statx %s: %w", path.Dir(d.path), err)
	}
	// O_PATH and statx from the cache: if the directory was mounted
	// since the table was read, neither asks the filesystem's server.
	fd, err := unix.Openat(parent, path.Base(d.path), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, nil
	}
	defer unix.Close(fd)
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, statxWant, &st); err != nil {
		return false, fmt.Errorf("statx %s: %w", d.path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mnt_id != pst.Mnt_id || st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return false, nil // not a directory (kubelet never makes one), or a mount point by now
	}
	d.ino = st.Ino
	if st.Mask&unix.STATX_BTIME != 0 && st.Btime.Sec > 0 {
		d.born, d.bornKind = time.Unix(st.Btime.Sec, int64(st.Btime.Nsec)), "birth time"
	} else {
		d.born, d.bornKind = time.Unix(st.Ctime.Sec, int64(st.Ctime.Nsec)), "ctime"
	}
	d.holder = holder(kt.s, d.path)
	// "." of the O_PATH descriptor is the directory itself, not a mount
	// made on it since.
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return true, fmt.Errorf("open %s: %w", d.path, err)
	}
	budget := maxPlainEntries
	d.files = plainCount{Complete: true}
	countPlain(dfd, st.Mnt_id, 0, &budget, &d.files)
	return true, nil
}

// countPlain counts the entries below the open directory dirfd (closing
// it) that are on mount mnt: files (anything not a directory, symlinks
// included and never followed) with the bytes of regular files, and
// directories, entered up to maxPlainDepth; it stops at budget entries.
func countPlain(dirfd int, mnt uint64, depth int, budget *int, c *plainCount) {
	f := os.NewFile(uintptr(dirfd), "")
	defer f.Close()
	for {
		if *budget <= 0 {
			c.Complete = false
			return
		}
		ents, err := f.ReadDir(min(*budget, 256))
		if len(ents) == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				c.Complete = false
			}
			return
		}
		*budget -= len(ents)
		for _, e := range ents {
			var st unix.Statx_t
			if unix.Statx(dirfd, e.Name(), unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_DONT_SYNC|unix.AT_NO_AUTOMOUNT,
				unix.STATX_TYPE|unix.STATX_SIZE|unix.STATX_MNT_ID, &st) != nil {
				c.Complete = false
				continue
			}
			if st.Mnt_id != mnt {
				c.Complete = false // another mount inside: not crossed
				continue
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				c.Files++
				if st.Mode&unix.S_IFMT == unix.S_IFREG {
					c.Bytes += int64(st.Size)
				}
				continue
			}
			c.Dirs++
			if depth+1 >= maxPlainDepth {
				c.Complete = false
				continue
			}
			sub, err := unix.Openat(dirfd, e.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				c.Complete = false
				continue
			}
			countPlain(sub, mnt, depth+1, budget, c)
		}
	}
}

// holder is the mount path p is on: the top mount at the nearest mount
// point above it.
func holder(s *mounts.Snapshot, p string) *mounts.Mount {
	for q := path.Dir(p); ; q = path.Dir(q) {
		ms := s.ByMountpoint(q)
		for i := len(ms) - 1; i >= 0; i-- {
			if s.CoveredBy(ms[i]) == nil {
				return ms[i]
			}
		}
		if q == "/" || q == "." {
			return nil
		}
	}
}
