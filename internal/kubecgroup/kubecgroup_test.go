package kubecgroup

import (
	"slices"
	"strings"
	"testing"
)

const (
	uid = "e6043daa-adf1-6368-5562-b0cd59aa2890"
	cid = "1017fb1d7221faf00e18cf85d0bf54609e37bf32d2eaa5f875e62394ce65c7e0"
)

// The names kubelet gives, written out as kubelet writes them.
func TestPodPath(t *testing.T) {
	for _, tc := range []struct{ driver, qos, want string }{
		{Cgroupfs, Guaranteed, "kubepods/pod" + uid},
		{Cgroupfs, Burstable, "kubepods/burstable/pod" + uid},
		{Cgroupfs, BestEffort, "kubepods/besteffort/pod" + uid},
		{Systemd, Guaranteed, "kubepods.slice/kubepods-pode6043daa_adf1_6368_5562_b0cd59aa2890.slice"},
		{Systemd, Burstable, "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pode6043daa_adf1_6368_5562_b0cd59aa2890.slice"},
		{Systemd, BestEffort, "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pode6043daa_adf1_6368_5562_b0cd59aa2890.slice"},
	} {
		if got := PodPath(tc.driver, tc.qos, uid); got != tc.want {
			t.Errorf("PodPath(%s, %s) = %s, want %s", tc.driver, tc.qos, got, tc.want)
		}
	}
	for i, d := range Drivers {
		if !strings.HasPrefix(PodPath(d, BestEffort, uid), Roots[i]+"/") {
			t.Errorf("%s's pod path %s is not below its root %s", d, PodPath(d, BestEffort, uid), Roots[i])
		}
	}
	if got := PodPaths(uid); len(got) != 6 || got[0] != "kubepods/pod"+uid || !slices.Contains(got, PodPath(Systemd, BestEffort, uid)) {
		t.Errorf("PodPaths: %v", got)
	}
}

// What one direction writes the other reads back: the naming and the
// parsing cannot drift apart.
func TestParseReadsWhatPodPathWrites(t *testing.T) {
	for _, d := range Drivers {
		for _, q := range QoSClasses {
			want := Pod{UID: uid, QoS: q}
			if got, ok := Parse("/" + PodPath(d, q, uid)); !ok || got != want {
				t.Errorf("%s %s pod: %+v %v, want %+v", d, q, got, ok, want)
			}
		}
	}
	for _, bad := range []string{"/", "/system.slice/containerd.service", "/kubepods.slice/kubepods-burstable.slice",
		"/kubepods/besteffort/podxyz/" + cid, "/user.slice/pod" + uid, "/kubepods.slice/kubepods-weird-pod" + uid + ".slice"} {
		if p, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) = %+v, want no pod", bad, p)
		}
	}
}

func TestValidUID(t *testing.T) {
	for _, good := range []string{uid, "0123456789abcdef0123456789abcdef", "Static-Pod-1"} {
		if !ValidUID(good) {
			t.Errorf("ValidUID(%q) false", good)
		}
	}
	for _, bad := range []string{"", "../x", "a/b", "a_b", string(make([]byte, 65))} {
		if ValidUID(bad) {
			t.Errorf("ValidUID(%q) true", bad)
		}
	}
}
