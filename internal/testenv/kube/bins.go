package kube

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// Version is the Kubernetes release the suite runs (build/go.mod pins it).
const Version = "v1.34.4"

// binEnv names a directory holding prebuilt binaries (make e2e sets it).
const binEnv = "MOUNTWATCHD_KUBE_BIN"

// Binaries returns the directory with kube-apiserver, kube-controller-manager,
// kube-scheduler, kubelet, kubectl and e2e-csi, building them with
// build/build.sh unless $MOUNTWATCHD_KUBE_BIN names one.
func Binaries(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(binEnv)
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		script := filepath.Join(filepath.Dir(file), "build", "build.sh")
		cache, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(cache, "mountwatchd-e2e", "kube-"+Version)
		cmd := exec.Command("bash", script, dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build the Kubernetes binaries: %v\n%s", err, out)
		}
	}
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl", "e2e-csi"} {
		_, err := os.Stat(filepath.Join(dir, b))
		testenv.Require(t, err == nil, "%s in %s (make e2e builds it)", b, dir)
	}
	return dir
}
