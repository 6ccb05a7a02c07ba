package walk

import (
	"unsafe"

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
				out = append(out, Dirent{name, d.Type})
			}
		}
	}
	return out, nil
}

// direntNameOff is where the name starts in a linux_dirent64.
var direntNameOff = int(unsafe.Offsetof(unix.Dirent{}.Name))

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}
