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
// directory) is an answer; any other is the probe's error.
func readDir(fd int) error {
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW
	dfd, err := unix.Openat(fd, ".", flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) { // O_NOATIME on a directory we do not own
		dfd, err = unix.Openat(fd, ".", flags, 0)
	}
	if err == nil {
		defer unix.Close(dfd)
		var buf [readDirBuf]byte
		for {
			_, err = unix.Getdents(dfd, buf[:])
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
	}
	switch {
	case err == nil, errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM),
		errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ENOENT), errors.Is(err, unix.EINVAL):
		return nil
	}
	return err
}
