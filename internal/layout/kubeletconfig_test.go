package layout

import "testing"

func TestKubeletConfigPodLogsDir(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
		ok               bool
	}{
		{"yaml", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\npodLogsDir: /data/kubernetes/pod-logs\n", "/data/kubernetes/pod-logs", true},
		{"json", `{"kind":"KubeletConfiguration","podLogsDir":"/srv/logs/pods/"}`, "/srv/logs/pods", true},
		{"unset", "kind: KubeletConfiguration\ncgroupDriver: systemd\n", "", false},
		{"relative", "kind: KubeletConfiguration\npodLogsDir: logs\n", "", false},
		{"other kind", "kind: KubeProxyConfiguration\npodLogsDir: /x\n", "", false},
		{"not yaml", "\x00\x01{[", "", false},
		{"nested key is not it", "kind: KubeletConfiguration\nlogging:\n  podLogsDir: /x\n", "", false},
	} {
		got, ok := KubeletConfigPodLogsDir([]byte(tc.data))
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %q %v, want %q %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
