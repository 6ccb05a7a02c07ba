package walk

import (
	"encoding/binary"
	"sync"

	"golang.org/x/sys/unix"
)

// Dirent is a directory entry read by readDir.
type Dirent struct {
	Name string
	Typ  uint8
}

// ReadDir reads at most max entries of the directory fd, opened for it
// (none read yet), without "." and "..".
func ReadDir(fd, max int) ([]Dirent, error) {
	var out []Dirent
	buf := getdentsBuf()
	defer putGetdentsBuf(buf)
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
			d, ok := parseDirent(buf[off:n])
			if !ok {
				break
			}
			off += d.reclen
			if name := string(d.name); name != "." && name != ".." {
				out = append(out, Dirent{name, d.typ})
			}
		}
	}
	return out, nil
}

// getdentsBufs holds getdents buffers for reuse: a walk reads tens of
// thousands of directories, and a fresh 32 KiB buffer for each (zeroed,
// and garbage after) cost more than reading most of them.
var getdentsBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func getdentsBuf() []byte     { return *getdentsBufs.Get().(*[]byte) }
func putGetdentsBuf(b []byte) { getdentsBufs.Put(&b) }

// rawDirent is one linux_dirent64 record of a getdents buffer.
type rawDirent struct {
	off    int64 // the directory position after it (d_off)
	reclen int
	typ    uint8
	name   []byte // in the buffer, without its NUL padding
}

// Offsets in a linux_dirent64: d_ino (8 bytes), d_off (8), d_reclen (2),
// d_type (1), d_name.
const (
	direntOffOff    = 8
	direntReclenOff = 16
	direntTypeOff   = 18
	direntNameOff   = 19
)

// parseDirent reads the record at the start of b, the rest of what
// getdents returned. It reads the fields from the bytes, not through a
// *unix.Dirent: that struct is 280 bytes, longer than most records, and a
// pointer to it near the end of the buffer would reach past it. false: b
// holds no whole record (the kernel never returns one).
func parseDirent(b []byte) (rawDirent, bool) {
	if len(b) < direntNameOff {
		return rawDirent{}, false
	}
	reclen := int(binary.NativeEndian.Uint16(b[direntReclenOff:]))
	if reclen < direntNameOff || reclen > len(b) {
		return rawDirent{}, false
	}
	name := b[direntNameOff:reclen]
	if i := indexNUL(name); i >= 0 {
		name = name[:i]
	}
	return rawDirent{off: int64(binary.NativeEndian.Uint64(b[direntOffOff:])), reclen: reclen, typ: b[direntTypeOff], name: name}, true
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}
