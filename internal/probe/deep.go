package probe

import (
	"errors"

	"golang.org/x/sys/unix"
)

// readDirBuf is the one getdents64 buffer of a deep request: enough for
// the server to answer with a page of entries, never a full listing.
const readDirBuf = 4096

// readDir is the deep request: it opens the directory an O_PATH descriptor
// refers to and reads its first entries with one getdents64. A FUSE client
// sends OPENDIR and READDIR to its server (ceph-fuse asks its MDS for both,
// sshfs its SFTP server), and NFS revalidates a directory with the server
// on open; the statfs and stat that come before may be answered from the
// client's caches (ceph-fuse answers both with its MDS down). An error
// that says the server answered (a permission, a root that is not a
// directory) is an answer; any other is the probe's error. It returns how
// many names other than . and .. the buffer held, and whether the server
// said the directory does not exist (ENOENT: deleted).
func readDir(fd int) (names int, gone bool, err error) {
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW
	dfd, err := unix.Openat(fd, ".", flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) { // O_NOATIME on a directory we do not own
		dfd, err = unix.Openat(fd, ".", flags, 0)
	}
	if err == nil {
		defer unix.Close(dfd)
		var buf [readDirBuf]byte
		n := 0
		for {
			n, err = unix.Getdents(dfd, buf[:])
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if err == nil && n > 0 {
			_, names, _ = unix.ParseDirent(buf[:n], -1, nil) // skips . and ..
		}
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		return 0, true, nil
	case err == nil, errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM),
		errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EINVAL):
		return names, false, nil
	}
	return 0, false, err
}
