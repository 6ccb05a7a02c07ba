package tasks

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Filesystem families of a wait: what kind of server a stuck task waits on.
const (
	FamilyFUSE = "fuse"
	FamilyNFS  = "nfs"
	FamilyCIFS = "cifs"
	FamilyCeph = "ceph"
	Family9P   = "9p"
)

// waitFamily names the filesystem family a wait channel belongs to, or "".
// The names are the functions the kernel reports in
// /proc/<pid>/task/<tid>/wchan (the innermost caller that is not a
// scheduler function), from its source:
//
//   - FUSE (fs/fuse): request_wait_answer, a task waiting for the server's
//     answer to its request (seen here, see tasks_live_test.go); the other
//     fuse_* waits (fuse_get_req waiting for the connection to take
//     requests, fuse_lock_inode, fuse_wait_on_folio_writeback,
//     fuse_sync_writes ...). fuse_dev_* are the server's own threads
//     waiting for requests, and never a stuck client.
//   - NFS (net/sunrpc, fs/nfs): rpc_wait_bit_killable, a synchronous RPC
//     waiting for the server; nfs_wait_bit_killable and the other nfs_*,
//     nfs4_*, rpc_* and __rpc_* waits.
//   - CIFS/SMB (fs/smb/client): wait_for_response, a request waiting for
//     the server's answer; wait_for_free_credits and wait_for_compound_request,
//     waiting for the server to grant credits; cifs_*, smb2_* and smb3_*
//     waits (cifs_wait_bit_killable, reconnects).
//   - the Ceph kernel client (ceph_*) and 9p (p9_*: p9_client_rpc).
func waitFamily(wchan string) string {
	switch {
	case wchan == "request_wait_answer",
		strings.HasPrefix(wchan, "fuse_") && !strings.HasPrefix(wchan, "fuse_dev_"):
		return FamilyFUSE
	case strings.HasPrefix(wchan, "rpc_"), strings.HasPrefix(wchan, "__rpc_"),
		strings.HasPrefix(wchan, "nfs_"), strings.HasPrefix(wchan, "nfs4_"):
		return FamilyNFS
	case wchan == "wait_for_response", wchan == "wait_for_free_credits", wchan == "wait_for_compound_request",
		strings.HasPrefix(wchan, "cifs_"), strings.HasPrefix(wchan, "smb2_"), strings.HasPrefix(wchan, "smb3_"):
		return FamilyCIFS
	case strings.HasPrefix(wchan, "ceph_"):
		return FamilyCeph
	case strings.HasPrefix(wchan, "p9_"):
		return Family9P
	}
	return ""
}

// fstypeFamily is the family of a mount's filesystem type, or "" for one
// with no server to wait on. virtiofs is FUSE over virtio: its waits are
// FUSE waits.
func fstypeFamily(fstype string) string {
	switch {
	case fstype == "fuse", fstype == "fuseblk", strings.HasPrefix(fstype, "fuse."), fstype == "virtiofs":
		return FamilyFUSE
	case fstype == "nfs", fstype == "nfs4":
		return FamilyNFS
	case fstype == "cifs", fstype == "smb3", fstype == "smbfs":
		return FamilyCIFS
	case fstype == "ceph":
		return FamilyCeph
	case fstype == "9p":
		return Family9P
	}
	return ""
}

// stuckState says whether a task in state with wait channel wchan may be
// stuck on a server. Uninterruptible sleep (D, which includes the killable
// waits of NFS and CIFS) always may. A FUSE request first waits
// interruptibly, so that a signal can send the server FUSE_INTERRUPT: a task
// that no signal reached sleeps in S in request_wait_answer (checked here:
// ls, stat and cat on a server that took their requests and does not answer
// all sit in S there, and turn D once SIGKILLed).
func stuckState(state byte, wchan string) bool {
	return state == 'D' || (state == 'S' && wchan == "request_wait_answer")
}

// fdArg is, for system calls that work on the file a descriptor refers to,
// the index of that descriptor among the arguments. A task blocked in one
// of them waits on the descriptor's mount, which fdinfo names.
var fdArg = map[int]int{
	unix.SYS_READ: 0, unix.SYS_WRITE: 0, unix.SYS_PREAD64: 0, unix.SYS_PWRITE64: 0,
	unix.SYS_READV: 0, unix.SYS_WRITEV: 0, unix.SYS_PREADV: 0, unix.SYS_PWRITEV: 0,
	unix.SYS_PREADV2: 0, unix.SYS_PWRITEV2: 0, unix.SYS_FSTAT: 0, unix.SYS_FSTATFS: 0,
	unix.SYS_GETDENTS64: 0, unix.SYS_IOCTL: 0, unix.SYS_LSEEK: 0, unix.SYS_FSYNC: 0,
	unix.SYS_FDATASYNC: 0, unix.SYS_SYNC_FILE_RANGE: 0, unix.SYS_SYNCFS: 0, unix.SYS_FTRUNCATE: 0,
	unix.SYS_FALLOCATE: 0, unix.SYS_FADVISE64: 0, unix.SYS_READAHEAD: 0, unix.SYS_FCHDIR: 0,
	unix.SYS_FCHMOD: 0, unix.SYS_FCHOWN: 0, unix.SYS_FGETXATTR: 0, unix.SYS_FSETXATTR: 0,
	unix.SYS_FLISTXATTR: 0, unix.SYS_FREMOVEXATTR: 0, unix.SYS_FLOCK: 0, unix.SYS_FCNTL: 0,
	unix.SYS_SENDFILE: 1, unix.SYS_COPY_FILE_RANGE: 0, unix.SYS_SPLICE: 0,
}

// dirfdArg is, for the *at system calls, the index of the directory
// descriptor a relative path is looked up from. The path itself is in the
// task's memory, which is never read, so the descriptor's mount is where the
// lookup started: it counts only when it is of the family the task waits on.
var dirfdArg = map[int]int{
	unix.SYS_OPENAT: 0, unix.SYS_OPENAT2: 0, unix.SYS_STATX: 0, unix.SYS_MKDIRAT: 0,
	unix.SYS_UNLINKAT: 0, unix.SYS_FCHMODAT: 0, unix.SYS_FCHOWNAT: 0, unix.SYS_FACCESSAT: 0,
	unix.SYS_FACCESSAT2: 0, unix.SYS_MKNODAT: 0, unix.SYS_READLINKAT: 0, unix.SYS_RENAMEAT2: 0,
	unix.SYS_LINKAT: 0, unix.SYS_SYMLINKAT: 1, unix.SYS_UTIMENSAT: 0,
}

// syscallNames name the system calls of fdArg and dirfdArg in reports.
var syscallNames = map[int]string{
	unix.SYS_READ: "read", unix.SYS_WRITE: "write", unix.SYS_PREAD64: "pread64", unix.SYS_PWRITE64: "pwrite64",
	unix.SYS_READV: "readv", unix.SYS_WRITEV: "writev", unix.SYS_PREADV: "preadv", unix.SYS_PWRITEV: "pwritev",
	unix.SYS_PREADV2: "preadv2", unix.SYS_PWRITEV2: "pwritev2", unix.SYS_FSTAT: "fstat", unix.SYS_FSTATFS: "fstatfs",
	unix.SYS_GETDENTS64: "getdents64", unix.SYS_IOCTL: "ioctl", unix.SYS_LSEEK: "lseek", unix.SYS_FSYNC: "fsync",
	unix.SYS_FDATASYNC: "fdatasync", unix.SYS_SYNC_FILE_RANGE: "sync_file_range", unix.SYS_SYNCFS: "syncfs",
	unix.SYS_FTRUNCATE: "ftruncate", unix.SYS_FALLOCATE: "fallocate", unix.SYS_FADVISE64: "fadvise64",
	unix.SYS_READAHEAD: "readahead", unix.SYS_FCHDIR: "fchdir", unix.SYS_FCHMOD: "fchmod", unix.SYS_FCHOWN: "fchown",
	unix.SYS_FGETXATTR: "fgetxattr", unix.SYS_FSETXATTR: "fsetxattr", unix.SYS_FLISTXATTR: "flistxattr",
	unix.SYS_FREMOVEXATTR: "fremovexattr", unix.SYS_FLOCK: "flock", unix.SYS_FCNTL: "fcntl",
	unix.SYS_SENDFILE: "sendfile", unix.SYS_COPY_FILE_RANGE: "copy_file_range", unix.SYS_SPLICE: "splice",
	unix.SYS_OPENAT: "openat", unix.SYS_OPENAT2: "openat2", unix.SYS_STATX: "statx", unix.SYS_MKDIRAT: "mkdirat",
	unix.SYS_UNLINKAT: "unlinkat", unix.SYS_FCHMODAT: "fchmodat", unix.SYS_FCHOWNAT: "fchownat",
	unix.SYS_FACCESSAT: "faccessat", unix.SYS_FACCESSAT2: "faccessat2", unix.SYS_MKNODAT: "mknodat",
	unix.SYS_READLINKAT: "readlinkat", unix.SYS_RENAMEAT2: "renameat2", unix.SYS_LINKAT: "linkat",
	unix.SYS_SYMLINKAT: "symlinkat", unix.SYS_UTIMENSAT: "utimensat",
}

// fdOf returns the descriptor a blocked system call works on and whether
// it is a directory a relative path started from (dirfd). AT_FDCWD and
// other negative descriptors are none.
func fdOf(sc syscallLine) (fd int, dirfd, ok bool) {
	i, isFD := fdArg[sc.Nr]
	if !isFD {
		if i, ok = dirfdArg[sc.Nr]; !ok {
			return -1, false, false
		}
		dirfd = true
	}
	// Descriptors are ints: the register's low 32 bits (AT_FDCWD shows as 0xffffff9c).
	v := int32(uint32(sc.Args[i]))
	if v < 0 {
		return -1, false, false
	}
	return int(v), dirfd, true
}

// syscallName names a system call for a report: its name when the scanner
// knows it, else its number.
func syscallName(nr int) string {
	switch nr {
	case notInSyscall:
		return "none"
	case running:
		return "running"
	}
	if n, ok := syscallNames[nr]; ok {
		return n
	}
	return "syscall_" + strconv.Itoa(nr)
}
