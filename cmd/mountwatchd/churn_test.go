package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// churnDuration is how long TestDaemonMountChurn churns: a minute in
// make test, MOUNTWATCHD_CHURN (a Go duration) for make soak.
func churnDuration(t *testing.T) time.Duration {
	if v := os.Getenv("MOUNTWATCHD_CHURN"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("MOUNTWATCHD_CHURN=%q: %v", v, err)
		}
		return d
	}
	return time.Minute
}

type usage struct{ rss, goroutines, fds float64 }

func (d *daemonProc) usage() usage {
	m := d.metrics()
	var u usage
	u.rss, _ = value(m, "process_resident_memory_bytes ")
	u.goroutines, _ = value(m, "go_goroutines ")
	u.fds, _ = value(m, "process_open_fds ")
	return u
}

// Thousands of mounts made and removed under kubelet pod volume paths while
// the daemon reads, probes and scans, with a real Prometheus scraping it:
// tmpfs volumes, bind mounts of them and bindfs FUSE mounts, each unmounted
// cleanly; and every 200 rounds a FUSE volume whose server is killed, which
// must be reported stale before it is unmounted. A mount that simply went
// away is never a finding (a probe that finds its path gone, or leading
// elsewhere, says nothing), and memory, goroutines and descriptors are flat
// from the first to the last minute.
func TestDaemonMountChurn(t *testing.T) {
	testenv.RequireRoot(t)
	bindfs := testenv.RequireCommand(t, "bindfs", "bindfs")
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	kubelet := dir + "/kubelet"
	if err := os.MkdirAll(dir+"/src/a", 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, nil, "--path.kubelet", kubelet, "--path.pod-logs", dir+"/logs", "--interval=1s",
		"--probe.interval=300ms", "--probe.timeout=2s", "--scan.interval=2s", "--log.target=stderr")
	prom := testenv.StartPrometheus(t, strings.TrimPrefix(d.base, "http://"))

	vol := func(i int) string {
		return fmt.Sprintf("%s/pods/u%d/volumes/kubernetes.io~csi/pvc-%d/mount", kubelet, i%20, i)
	}
	total, fuse, broken := 0, 0, 0
	// breakFUSE mounts a bindfs volume, kills its server (a dead ceph-fuse)
	// and waits for the daemon to report it stale, then unmounts it.
	breakFUSE := func(i int) {
		mp := fmt.Sprintf("%s/pods/u%d/volumes/kubernetes.io~csi/pvc-broken-%d/mount", kubelet, i%20, i)
		if err := os.MkdirAll(mp, 0o755); err != nil {
			t.Fatal(err)
		}
		srv := exec.Command(bindfs, "-f", "--no-allow-other", "-o", "subtype=ceph-fuse", dir+"/src", mp)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		testenv.WaitMounted(t, mp)
		_ = srv.Process.Kill()
		_ = srv.Wait()
		series := fmt.Sprintf(`mountwatchd_problem{check="stale_mount",fstype="fuse.ceph-fuse",mountpoint=%q`, mp)
		testenv.WaitUntil(t, 20*time.Second, "the killed FUSE volume reported stale", func() bool { _, ok := value(d.metrics(), series); return ok })
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
			t.Fatalf("unmount %s: %v", mp, err)
		}
		broken++
	}
	var base usage
	warm := time.Now().Add(10 * time.Second)
	end := time.Now().Add(churnDuration(t))
	for i := 0; time.Now().Before(end); i++ {
		if base.rss == 0 && time.Now().After(warm) {
			base = d.usage()
		}
		if i%200 == 100 {
			breakFUSE(i)
		}
		// 20 tmpfs volumes, each with a bind mount (a subpath), made and
		// removed.
		var made []string
		for j := 0; j < 20; j++ {
			mp := vol(i*20 + j)
			if err := os.MkdirAll(mp, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mount("none", mp, "tmpfs", 0, ""); err != nil {
				t.Fatal(err)
			}
			sub := fmt.Sprintf("%s/pods/u%d/volume-subpaths/pvc-%d/app/0", kubelet, (i*20+j)%20, i*20+j)
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mount(mp, sub, "", syscall.MS_BIND, ""); err != nil {
				t.Fatal(err)
			}
			made = append(made, sub, mp)
			total += 2
		}
		// One FUSE volume per round, unmounted cleanly.
		fmp := vol(1_000_000 + i)
		if err := os.MkdirAll(fmp, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bindfs, "--no-allow-other", "-o", "subtype=ceph-fuse", dir+"/src", fmp).CombinedOutput(); err != nil {
			t.Fatalf("bindfs: %v %s", err, out)
		}
		fuse++
		total++
		time.Sleep(20 * time.Millisecond)
		// Lazily: a probe or scan of the daemon may hold the mount for a
		// moment (EBUSY); it leaves the table at once all the same.
		for _, mp := range append(made, fmp) {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
				t.Fatalf("unmount %s: %v", mp, err)
			}
		}
		_ = os.RemoveAll(fmt.Sprintf("%s/pods/u%d", kubelet, i%20))
	}
	last := d.usage()
	t.Logf("churn: %d mounts made and removed (%d FUSE, %d of them killed and reported stale) in %s; start rss %.1f MiB goroutines %.0f fds %.0f; end rss %.1f MiB goroutines %.0f fds %.0f",
		total, fuse, broken, churnDuration(t), base.rss/(1<<20), base.goroutines, base.fds, last.rss/(1<<20), last.goroutines, last.fds)
	if broken == 0 {
		t.Error("no FUSE volume was broken during the churn")
	}
	if total < 2000 {
		t.Errorf("only %d mounts churned", total)
	}
	if last.goroutines > base.goroutines+20 || last.fds > base.fds+20 || last.rss > 1.5*base.rss+32<<20 {
		t.Errorf("not flat: start %+v, end %+v", base, last)
	}
	// Only the volumes broken on purpose were ever a problem.
	if problems := prom.Query(t, `max_over_time(mountwatchd_problem{mountpoint!~".*/pvc-broken-[0-9]+/mount"}[1h])`); len(problems) > 0 {
		t.Errorf("a mount that went away was reported: %v", problems)
	}
	if n := prom.Query(t, `max_over_time(mountwatchd_problems{severity="critical",check!="stale_mount"}[1h]) > 0`); len(n) > 0 {
		t.Errorf("critical problems other than the killed FUSE volumes during the churn: %v", n)
	}
	if code, body := d.get("/healthz"); code != 200 {
		t.Errorf("/healthz %d %s after the churn", code, body)
	}
}
