package kubecgroup_test

import (
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/kubecgroup"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

const (
	uid = "e6043daa-adf1-6368-5562-b0cd59aa2890"
	cid = "1017fb1d7221faf00e18cf85d0bf54609e37bf32d2eaa5f875e62394ce65c7e0"
)

// A container's cgroup as the stand-in pods name it (testenv.ContainerPath,
// kubelet's and containerd's names) is what Parse reads back: the tests'
// pods and the parsing cannot drift apart.
func TestParseReadsWhatContainerPathWrites(t *testing.T) {
	if got := testenv.ContainerPath(kubecgroup.Systemd, kubecgroup.Burstable, uid, cid); got != kubecgroup.PodPath(kubecgroup.Systemd, kubecgroup.Burstable, uid)+"/cri-containerd-"+cid+".scope" {
		t.Errorf("systemd container path %s", got)
	}
	if got := testenv.ContainerPath(kubecgroup.Cgroupfs, kubecgroup.Guaranteed, uid, cid); got != "kubepods/pod"+uid+"/"+cid {
		t.Errorf("cgroupfs container path %s", got)
	}
	for _, d := range kubecgroup.Drivers {
		for _, q := range kubecgroup.QoSClasses {
			want := kubecgroup.Pod{UID: uid, QoS: q, ContainerID: cid}
			if got, ok := kubecgroup.Parse("/kubelet.slice/" + testenv.ContainerPath(d, q, uid, cid)); !ok || got != want {
				t.Errorf("%s %s container: %+v %v, want %+v", d, q, got, ok, want)
			}
		}
	}
}
