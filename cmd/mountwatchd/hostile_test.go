package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// setOpaque marks p (not following a symlink) with trusted.overlay.opaque.
func setOpaque(t *testing.T, p string) {
	t.Helper()
	if err := syscall.Setxattr(p, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatalf("setxattr %q: %v", p, err)
	}
}

// A pod volume built to hurt the scanner, on real files: names with a
// newline, quotes, invalid UTF-8, control characters and a terminal escape;
// a path longer than PATH_MAX; 200 levels of nesting; a symlink loop and
// symlinks to / and to a marked directory outside the volume. Every marked
// directory inside is found exactly once, nothing outside is (no symlink is
// followed), the report stays one line per field with the bytes escaped,
// and the JSON carries each name.
func TestOnceHostileVolume(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	kubelet := dir + "/kubelet"
	vol := kubelet + "/pods/u1/volumes/kubernetes.io~empty-dir/hostile"
	outside := dir + "/outside"
	for _, d := range []string{vol, outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	setOpaque(t, outside)

	var marked []string
	mark := func(p string) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		setOpaque(t, p)
		marked = append(marked, p)
	}
	for _, name := range []string{"new\nline", `quo"te's`, "bad\xff\xfeutf8", "ctl\x01\x7f", "esc\x1b[31mred\x1b[0m", "back\\slash", "sp ace=1"} {
		mark(vol + "/" + name)
	}
	// Longer than PATH_MAX (4096) from the volume: 20 names of 250 bytes,
	// made with mkdirat so no single path is too long.
	long := vol
	fd, err := syscall.Open(vol, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		name := strings.Repeat(string(rune('a'+i)), 250)
		if err := syscall.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		nfd, err := syscall.Openat(fd, name, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
		syscall.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd, long = nfd, long+"/"+name
	}
	if err := unix.Fsetxattr(fd, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	marked = append(marked, long)
	// 200 levels: past the walk's depth limit (128, one descriptor per
	// level). Not marked as a finding to find: the pass must say it did
	// not go there rather than call it clean.
	deep := vol + "/deep"
	for i := 0; i < 200; i++ {
		deep += "/d"
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	setOpaque(t, deep)
	for _, l := range []struct{ target, name string }{
		{"/", "to-root"}, {outside, "to-outside"}, {"loop-b", "loop-a"}, {"loop-a", "loop-b"}, {".", "to-self"},
	} {
		if err := os.Symlink(l.target, filepath.Join(vol, l.name)); err != nil {
			t.Fatal(err)
		}
	}

	r := mountwatchd(t, "--once", "--path.kubelet", kubelet, "--output=json", "--once.timeout=30s")
	var d struct {
		Findings []struct {
			Check string `json:"check"`
			Path  string `json:"path"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("not JSON: %v\n%.2000s", err, r.stdout)
	}
	got := map[string]int{}
	for _, f := range d.Findings {
		if f.Check != "stray_overlay_xattr" {
			continue
		}
		got[f.Path]++
		if !strings.HasPrefix(f.Path, vol+"/") {
			t.Errorf("finding outside the volume (a symlink followed?): %q", f.Path)
		}
	}
	for _, p := range marked {
		// JSON holds UTF-8: an invalid byte comes back as U+FFFD, every
		// other byte as it was.
		var want string
		b, _ := json.Marshal(p)
		_ = json.Unmarshal(b, &want)
		if got[want] != 1 {
			t.Errorf("%q found %d times, want once", want, got[want])
		}
	}
	if len(got) != len(marked) || r.code != 1 {
		t.Errorf("exit %d, %d distinct findings, want 1 and %d", r.code, len(got), len(marked))
	}
	if !strings.Contains(r.stdout, "1 directories deeper than 128 levels were not entered") {
		t.Errorf("the 200-level tree is not said to be left unscanned:\n%.3000s", r.stdout)
	}

	// The text report escapes: no raw control byte, no raw invalid UTF-8.
	r = mountwatchd(t, "--once", "--path.kubelet", kubelet, "--once.timeout=30s")
	for _, bad := range []string{"\x1b", "\x01", "\x7f", "\xff", "new\nline"} {
		if strings.Contains(r.stdout, bad) {
			t.Errorf("text report holds %q raw", bad)
		}
	}
	if !strings.Contains(r.stdout, `esc\x1b[31mred\x1b[0m`) || !strings.Contains(r.stdout, `new\x0aline`) || !strings.Contains(r.stdout, `bad\xff\xfeutf8`) {
		t.Errorf("text report does not show the escaped names:\n%.3000s", r.stdout)
	}
}

// A volume of a million entries on tmpfs: --once's scan stops at
// --scan.once-budget and says so, in bounded time; the budget holds.
func TestOnceMillionEntryVolume(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir) // removing a million files from a temp dir is slow; an unmount is not
	vol := dir + "/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/big"
	for d := 0; d < 1000; d++ {
		sub := vol + "/" + string(rune('a'+d%26)) + strings.Repeat("x", d/26)
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		fd, err := syscall.Open(sub, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		for f := 0; f < 1000; f++ {
			nfd, err := syscall.Openat(fd, "f"+strings.Repeat("0", 3-len(itoa(f)))+itoa(f), syscall.O_CREAT|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			syscall.Close(nfd)
		}
		syscall.Close(fd)
	}
	r := mountwatchd(t, "--once", "--path.kubelet", dir+"/kubelet", "--scan.once-budget=200000", "--once.timeout=50s")
	if r.code != 2 || !strings.Contains(r.stdout, "--scan.once-budget") || !strings.Contains(r.stdout, "Scanned 200000 entries") {
		t.Errorf("exit %d, want the scan cut at the budget and said so\n%.3000s", r.code, r.stdout)
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
