package beneath_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/beneath"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func mountID(t *testing.T, p string) int {
	t.Helper()
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Mnt_id)
}

// TestListsWhatAMountHides: a file left in a directory before a tmpfs was
// mounted over it is listed through the clone; the mount over it and the
// parent are unchanged, and an empty directory lists nothing.
func TestListsWhatAMountHides(t *testing.T) {
	testenv.RequireRoot(t)
	base := t.TempDir()
	testenv.Tmpfs(t, base)
	for _, d := range []string{"full", "empty"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"left-behind.txt", "b", "a"} {
		if err := os.WriteFile(filepath.Join(base, "full", f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Tmpfs(t, filepath.Join(base, "full"))
	testenv.Tmpfs(t, filepath.Join(base, "empty"))
	if err := os.WriteFile(filepath.Join(base, "full", "in-the-mount"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile("/proc/self/mountinfo")

	l, err := list(base, mountID(t, base), "full", 100)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "left-behind.txt"}; !slices.Equal(l.Names, want) || l.More {
		t.Errorf("listing = %+v, want %v", l, want)
	}
	l, err = list(base, mountID(t, base), "empty", 100)
	if err != nil || len(l.Names) != 0 {
		t.Errorf("empty directory: %+v, %v", l, err)
	}
	if after, _ := os.ReadFile("/proc/self/mountinfo"); string(after) != string(before) {
		t.Errorf("the mount table changed:\n%s\n---\n%s", before, after)
	}
	// The bound: two of three entries, and More.
	l, err = list(base, mountID(t, base), "full", 2)
	if err != nil || len(l.Names) != 2 || !l.More {
		t.Errorf("bounded listing = %+v, %v", l, err)
	}
}

// TestNoSymlinkNoOtherMount: a symlink on the way in the clone is not
// followed, a path with ".." is refused, and a stale mount id is ErrMoved.
func TestNoSymlinkNoOtherMount(t *testing.T) {
	testenv.RequireRoot(t)
	base := t.TempDir()
	testenv.Tmpfs(t, base)
	if err := os.MkdirAll(filepath.Join(base, "real", "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	id := mountID(t, base)
	if _, err := list(base, id, "link/d", 10); !errors.Is(err, unix.ELOOP) {
		t.Errorf("through a symlink: %v, want ELOOP", err)
	}
	if _, err := list(base, id, "real/../../etc", 10); err == nil {
		t.Error("a path with .. was listed")
	}
	if _, err := list(base, id+100000, "real", 10); !errors.Is(err, beneath.ErrMoved) {
		t.Errorf("wrong mount id: %v, want ErrMoved", err)
	}
	if _, err := list(base, id, "nothing-here", 10); !errors.Is(err, beneath.ErrNotDirectory) {
		t.Errorf("missing directory: %v, want ErrNotDirectory", err)
	}
}

// TestOtherNamespaceRefused measures what the package doc says: the kernel
// refuses to clone a mount of another mount namespace reached through
// /proc/<pid>/root (EINVAL), even as root with every capability.
func TestOtherNamespaceRefused(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	node := testenv.NewNode(t, fmt.Sprintf("mount -t tmpfs node %s && mkdir %s/d && touch %s/d/f && mount -t tmpfs over %s/d", dir, dir, dir, dir))
	p := "/proc/" + strconv.Itoa(node.PID) + "/root" + dir
	fd, err := unix.OpenTree(unix.AT_FDCWD, p, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err == nil {
		unix.Close(fd)
		t.Fatal("the kernel cloned another namespace's mount: hidden_entries could read it directly")
	}
	if err != unix.EINVAL {
		t.Errorf("open_tree of another namespace's mount: %v, want EINVAL", err)
	}
}

// list is Clone, Tree.List and Close: one directory under one mount.
func list(mountpoint string, mountID int, rel string, max int) (beneath.Listing, error) {
	t, err := beneath.Clone(mountpoint, mountID)
	if err != nil {
		return beneath.Listing{}, err
	}
	defer t.Close()
	return t.List(rel, max)
}
