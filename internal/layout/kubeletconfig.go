package layout

import (
	"path"

	"sigs.k8s.io/yaml"
)

// DefaultPodLogsDir is kubelet's podLogsDir when its config file sets none.
const DefaultPodLogsDir = "/var/log/pods"

// KubeletConfigPodLogsDir returns podLogsDir from a kubelet config file
// (KubeletConfiguration, YAML or JSON, as kubelet's --config reads it): the
// directory of the pods' log directories, <namespace>_<name>_<uid>, which
// name the pods. ok is false when the file sets none or is not a kubelet
// config, or the value is not an absolute path (kubelet refuses those).
func KubeletConfigPodLogsDir(data []byte) (string, bool) {
	var cfg struct {
		Kind       string `json:"kind"`
		PodLogsDir string `json:"podLogsDir"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return "", false
	}
	if cfg.Kind != "" && cfg.Kind != "KubeletConfiguration" {
		return "", false
	}
	if cfg.PodLogsDir == "" || !path.IsAbs(cfg.PodLogsDir) {
		return "", false
	}
	return path.Clean(cfg.PodLogsDir), true
}
