package tasks

import (
	"errors"
	"os"
	"testing"
)

func TestParseCgroup(t *testing.T) {
	const uid = "e6043daa-adf1-6368-5562-b0cd59aa2890"
	const uidU = "e6043daa_adf1_6368_5562_b0cd59aa2890"
	const cid = "1017fb1d7221faf00e18cf85d0bf54609e37bf32d2eaa5f875e62394ce65c7e0"
	for _, tc := range []struct {
		name, data string
		want       Pod
		ok         bool
	}{
		{"cgroupfs v1 besteffort", "9:name=systemd:/\n8:pids:/kubepods/besteffort/pod" + uid + "/" + cid + "\n0::/\n",
			Pod{UID: uid, QoS: "besteffort", ContainerID: cid}, true},
		{"cgroupfs v2 guaranteed", "0::/kubepods/pod" + uid + "/" + cid + "\n", Pod{UID: uid, QoS: "guaranteed", ContainerID: cid}, true},
		{"cgroupfs pod level (the pod's own cgroup)", "0::/kubepods/burstable/pod" + uid + "\n", Pod{UID: uid, QoS: "burstable"}, true},
		{"systemd v2 burstable", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope\n",
			Pod{UID: uid, QoS: "burstable", ContainerID: cid}, true},
		{"systemd v1 guaranteed", "12:memory:/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope\n",
			Pod{UID: uid, QoS: "guaranteed", ContainerID: cid}, true},
		{"systemd CRI-O", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/crio-" + cid + ".scope\n",
			Pod{UID: uid, QoS: "besteffort", ContainerID: cid}, true},
		{"systemd CRI-O's conmon is no container", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/crio-conmon-" + cid + ".scope\n",
			Pod{UID: uid, QoS: "besteffort"}, true},
		{"kubelet under a cgroup root", "0::/kubelet.slice/kubelet-kubepods.slice/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope\n",
			Pod{UID: uid, QoS: "besteffort", ContainerID: cid}, true},
		{"a node service", "0::/system.slice/containerd.service\n", Pod{}, false},
		{"the QoS slice itself", "0::/kubepods.slice/kubepods-burstable.slice\n", Pod{}, false},
		{"not a UID", "0::/kubepods/besteffort/podxyz/" + cid + "\n", Pod{}, false},
		{"a pod-named directory elsewhere", "0::/user.slice/pod" + uid + "/" + cid + "\n", Pod{}, false},
		{"garbage", "no colons here\n::\n", Pod{}, false},
	} {
		got, ok := parseCgroup([]byte(tc.data))
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: %+v %v, want %+v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseStat(t *testing.T) {
	data, err := os.ReadFile("testdata/proc/8603/task/8603/stat")
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseStat(data)
	if err != nil || st.Comm != "ls" || st.State != 'S' || st.PPID != 8596 || st.StartTime != 89565 || st.Flags != 4194304 {
		t.Errorf("captured stat: %+v %v", st, err)
	}
	// A command name may hold spaces and parentheses.
	st, err = parseStat([]byte("42 (a) b (c)) D 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0"))
	if err != nil || st.Comm != "a) b (c)" || st.State != 'D' || st.StartTime != 777 {
		t.Errorf("hostile comm: %+v %v", st, err)
	}
	for _, bad := range []string{"", "42 noparens D", "42 (x) D 1", "42 (x) DD 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777",
		"42 (x) D one 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777"} {
		if _, err := parseStat([]byte(bad)); !errors.Is(err, errMalformed) {
			t.Errorf("parseStat(%q) = %v, want a malformed error", bad, err)
		}
	}
}

func TestParseSyscall(t *testing.T) {
	sc, err := parseSyscall([]byte("217 0x3 0x55bec7e972c0 0x8000 0x7eff1e2045f8 0x7 0x55bec7e971e0 0x7ffcc94daff8 0x7eff1e2be043\n"))
	if err != nil || syscallName(sc.Nr) != "getdents64" || sc.Args[0] != 3 {
		t.Errorf("getdents64: %+v %v", sc, err)
	}
	if fd, dirfd, ok := fdOf(sc); !ok || dirfd || fd != 3 {
		t.Errorf("fdOf(getdents64 on 3) = %d %v %v", fd, dirfd, ok)
	}
	sc, err = parseSyscall([]byte("332 0xffffff9c 0x7ffe4ef09a33 0x900 0xfff 0x7ffe4ef08f40 0x55b0ea14d4c0 0x7ffe4ef08e68 0x7fa238bd2b3a\n"))
	if err != nil || syscallName(sc.Nr) != "statx" {
		t.Errorf("statx: %+v %v", sc, err)
	}
	if _, _, ok := fdOf(sc); ok {
		t.Error("statx from AT_FDCWD has no descriptor")
	}
	sc.Args[0] = 5
	if fd, dirfd, ok := fdOf(sc); !ok || !dirfd || fd != 5 {
		t.Errorf("fdOf(statx from dirfd 5) = %d %v %v", fd, dirfd, ok)
	}
	if sc, err := parseSyscall([]byte("-1 0x7ffcc94daff8 0x7eff1e2be043\n")); err != nil || sc.Nr != notInSyscall || syscallName(sc.Nr) != "none" {
		t.Errorf("blocked outside a system call: %+v %v", sc, err)
	}
	if sc, err := parseSyscall([]byte("running\n")); err != nil || sc.Nr != running {
		t.Errorf("running: %+v %v", sc, err)
	}
	for _, bad := range []string{"", "1 2 3 4", "x 0x1 0x2 0x3 0x4 0x5 0x6 0x7 0x8", "0 zz 0x2 0x3 0x4 0x5 0x6 0x7 0x8"} {
		if _, err := parseSyscall([]byte(bad)); !errors.Is(err, errMalformed) {
			t.Errorf("parseSyscall(%q) = %v, want a malformed error", bad, err)
		}
	}
}

func TestParseMntIDAndSwitches(t *testing.T) {
	if id, err := parseMntID([]byte("pos:\t0\nflags:\t02304000\nmnt_id:\t111\nino:\t0\n")); err != nil || id != 111 {
		t.Errorf("mnt_id: %d %v", id, err)
	}
	if _, err := parseMntID([]byte("pos:\t0\n")); !errors.Is(err, errMalformed) {
		t.Errorf("no mnt_id: %v", err)
	}
	data, err := os.ReadFile("testdata/proc/8603/task/8603/status")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseSwitches(data); err != nil {
		t.Errorf("captured status: %v", err)
	}
	if _, err := parseSwitches([]byte("Name:\tls\n")); !errors.Is(err, errMalformed) {
		t.Errorf("no switch counts: %v", err)
	}
}

func TestWaitFamily(t *testing.T) {
	for wchan, want := range map[string]string{
		"request_wait_answer": FamilyFUSE, "fuse_lock_inode": FamilyFUSE, "fuse_get_req": FamilyFUSE,
		"fuse_dev_do_read": "", "rpc_wait_bit_killable": FamilyNFS, "nfs_wait_bit_killable": FamilyNFS,
		"nfsd": "", "wait_for_response": FamilyCIFS, "cifs_wait_bit_killable": FamilyCIFS,
		"p9_client_rpc": Family9P, "ceph_mdsc_do_request": FamilyCeph,
		"d_alloc_parallel": "", "folio_wait_bit_common": "", "do_epoll_wait": "", "": "",
	} {
		if got := waitFamily(wchan); got != want {
			t.Errorf("waitFamily(%q) = %q, want %q", wchan, got, want)
		}
	}
	if !stuckState('S', "request_wait_answer") || stuckState('S', "rpc_wait_bit_killable") || !stuckState('D', "x") || stuckState('R', "") {
		t.Error("stuckState: D always, S only in request_wait_answer")
	}
}

func TestParseContainerLog(t *testing.T) {
	c, id, ok := parseContainerLog("web-0_team-a_app-server-1017fb1d7221faf00e18cf85d0bf54609e37bf32d2eaa5f875e62394ce65c7e0.log")
	if !ok || c.pod != "web-0" || c.namespace != "team-a" || c.container != "app-server" ||
		id != "1017fb1d7221faf00e18cf85d0bf54609e37bf32d2eaa5f875e62394ce65c7e0" {
		t.Errorf("%+v %q %v", c, id, ok)
	}
	for _, bad := range []string{"x.log", "a_b_c.log", "a_b_c-zz.log", "a_b_c-abc", "_b_c-abc.log", "a_b_c_d-abc.log"} {
		if _, _, ok := parseContainerLog(bad); ok {
			t.Errorf("parseContainerLog(%q) accepted", bad)
		}
	}
}
