package resolve

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// tree builds a directory with the symlinks the callers meet: absolute
// and relative ones inside the tree, one pointing out of it, a loop, and a
// file where a directory is expected.
func tree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"a/b/c", "var/lib/kubelet/pods/p/volumes/v", "snap/1/fs"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "a/file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"abs":      "/a/b",           // absolute: from the root under IN_ROOT
		"rel":      "a/b/c",          // relative
		"a/up":     "../snap/1",      // through ".."
		"escape":   "../../../../..", // ".." past the root stays at the root
		"loop1":    "loop2",
		"loop2":    "loop1",
		"dangling": "/nowhere",
		"procself": "/proc/self/cwd", // a path that is a magic link on the host
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func devIno(t *testing.T, fd int) [2]uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return [2]uint64{st.Dev, st.Ino}
}

// TestFallbackMatchesOpenat2 resolves the same paths with the kernel's
// openat2 and with the fallback and wants the same file or the same errno:
// the fallback is what runs under mountwatchd.service, where systemd's
// system call filter answers openat2 with ENOSYS.
func TestFallbackMatchesOpenat2(t *testing.T) {
	root := tree(t)
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	paths := []string{".", "", "a", "a/b/c", "/a/b/c", "a/../a/b", "../../a", "abs", "abs/c", "rel", "a/up/fs",
		"escape/a/b", "loop1", "dangling", "missing/x", "a/file", "a/file/x", "procself", "abs/../../..", "a/b/c/"}
	for _, mode := range []struct {
		name    string
		resolve uint64
	}{
		{"in root", unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS},
		{"no symlinks", unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS},
		{"in root, no symlinks", unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS},
	} {
		for _, flags := range []uint64{unix.O_PATH | unix.O_CLOEXEC, unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC} {
			for _, p := range paths {
				if mode.resolve&unix.RESOLVE_IN_ROOT == 0 && (p == "../../a" || p == "abs/../../..") {
					continue // leaves the tree, as openat2 allows without IN_ROOT: not compared
				}
				how := &unix.OpenHow{Flags: flags, Resolve: mode.resolve}
				kfd, kerr := unix.Openat2(rfd, p, how)
				ffd, ferr := fallback(rfd, p, how)
				switch {
				case kerr != nil || ferr != nil:
					if !errors.Is(kerr, ferr) {
						t.Errorf("%s, flags %#x, %q: openat2 %v, fallback %v", mode.name, flags, p, kerr, ferr)
					}
				case devIno(t, kfd) != devIno(t, ffd):
					t.Errorf("%s, flags %#x, %q: openat2 and the fallback opened different files", mode.name, flags, p)
				}
				for _, fd := range []int{kfd, ffd} {
					if fd >= 0 {
						unix.Close(fd)
					}
				}
			}
		}
	}
}

// TestFallbackOnlyForPathDescriptors: what the fallback does not emulate
// is left to openat2.
func TestFallbackOnlyForPathDescriptors(t *testing.T) {
	for _, how := range []unix.OpenHow{
		{Flags: unix.O_RDONLY, Resolve: unix.RESOLVE_IN_ROOT},
		{Flags: unix.O_PATH, Resolve: unix.RESOLVE_BENEATH},
		{Flags: unix.O_PATH, Resolve: unix.RESOLVE_NO_XDEV},
	} {
		if canFallBack(&how) {
			t.Errorf("%+v: the fallback claims it", how)
		}
	}
	if !canFallBack(&unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY, Resolve: supported}) {
		t.Error("the fallback refuses what the callers ask for")
	}
}

// TestOpenat2AfterRefusal: once openat2 was refused, Openat2 resolves
// through the fallback, with the same rules.
func TestOpenat2AfterRefusal(t *testing.T) {
	root := tree(t)
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	was := refused.Load()
	refused.Store(true)
	t.Cleanup(func() { refused.Store(was) })
	fd, err := Openat2(rfd, "abs/c", &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	want, err := unix.Open(filepath.Join(root, "a/b/c"), unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(want)
	if devIno(t, fd) != devIno(t, want) {
		t.Error("abs/c did not resolve to a/b/c below the root")
	}
	if fd, err := Openat2(rfd, "escape", &unix.OpenHow{Flags: unix.O_PATH, Resolve: unix.RESOLVE_NO_SYMLINKS}); !errors.Is(err, unix.ELOOP) {
		t.Errorf("a symlink under RESOLVE_NO_SYMLINKS: fd %d, %v, want ELOOP", fd, err)
	}
}
