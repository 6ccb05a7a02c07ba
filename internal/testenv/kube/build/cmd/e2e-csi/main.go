// Command e2e-csi is the end-to-end suite's CSI node plugin: it makes a
// real kubelet's side of a FUSE-backed CSI volume real (its CSI calls, its
// staging and publish paths, vol_data.json, the pod's cgroups and logs)
// without a public driver, which the module proxy does not serve here.
//
// It registers with kubelet through the plugin-registration socket under
// <kubelet root>/plugins_registry/ and serves the CSI identity and node
// services on a socket under <kubelet root>/plugins/<driver>/. NodeStageVolume
// starts the FUSE server the volume's attributes name at kubelet's staging
// path, as ceph-csi starts ceph-fuse there; NodePublishVolume bind-mounts
// the staging mount at the pod's target path, as ceph-csi does. Volumes are
// persistent (a PersistentVolume with csi.volumeAttributes):
//
//	server=fake-ceph-fuse backing=DIR   the suite's fakecephfuse (fuse.ceph-fuse)
//	server=ceph-fuse conf=FILE root=DIR a real ceph-fuse -r DIR (-o nonempty)
//	server=bindfs backing=DIR           Debian's bindfs (fuse.bindfs)
//
// It writes the FUSE server's PID to <state>/<volume id>.pid so a test can
// kill or stop it. It is a test program: it trusts its caller.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type plugin struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedNodeServer
	name, nodeID, endpoint, state string
	fuseBin                       string

	mu      sync.Mutex
	servers map[string]*exec.Cmd // by staging path
}

func main() {
	var p plugin
	var kubeletRoot string
	flag.StringVar(&p.name, "driver", "e2e.mountwatchd.test", "the driver's name")
	flag.StringVar(&p.nodeID, "node-id", "", "the node's name")
	flag.StringVar(&kubeletRoot, "kubelet-root", "/var/lib/kubelet", "kubelet's --root-dir")
	flag.StringVar(&p.state, "state", "", "where the FUSE servers' PID files go")
	flag.StringVar(&p.fuseBin, "fake-ceph-fuse", "", "the fakecephfuse binary")
	flag.Parse()
	log.SetFlags(log.Lmicroseconds)
	p.servers = map[string]*exec.Cmd{}
	p.endpoint = filepath.Join(kubeletRoot, "plugins", p.name, "csi.sock")
	reg := filepath.Join(kubeletRoot, "plugins_registry", p.name+"-reg.sock")
	for _, d := range []string{filepath.Dir(p.endpoint), filepath.Dir(reg), p.state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			log.Fatal(err)
		}
	}
	csiSrv := grpc.NewServer()
	csi.RegisterIdentityServer(csiSrv, &p)
	csi.RegisterNodeServer(csiSrv, &p)
	go serve(csiSrv, p.endpoint)
	regSrv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(regSrv, &registrar{p: &p})
	log.Printf("serving %s and %s", p.endpoint, reg)
	serve(regSrv, reg)
}

func serve(s *grpc.Server, path string) {
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		log.Fatal(err)
	}
	if err := s.Serve(l); err != nil {
		log.Fatal(err)
	}
}

type registrar struct{ p *plugin }

func (r *registrar) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{Type: registerapi.CSIPlugin, Name: r.p.name, Endpoint: r.p.endpoint,
		SupportedVersions: []string{"1.0.0"}}, nil
}

func (r *registrar) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	log.Printf("registration: registered=%v error=%q", s.PluginRegistered, s.Error)
	return &registerapi.RegistrationStatusResponse{}, nil
}

func (p *plugin) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: p.name, VendorVersion: "0.0.1"}, nil
}

func (p *plugin) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{}, nil
}

func (p *plugin) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

func (p *plugin) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: p.nodeID}, nil
}

func (p *plugin) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{Capabilities: []*csi.NodeServiceCapability{{
		Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME}},
	}}}, nil
}

// NodeStageVolume starts the volume's FUSE server at the staging path.
func (p *plugin) NodeStageVolume(_ context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	target := req.GetStagingTargetPath()
	log.Printf("stage %s at %s: %v", req.GetVolumeId(), target, req.GetVolumeContext())
	p.mu.Lock()
	defer p.mu.Unlock()
	if mounted(target) {
		return &csi.NodeStageVolumeResponse{}, nil
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	attrs := req.GetVolumeContext()
	var cmd *exec.Cmd
	switch attrs["server"] {
	case "fake-ceph-fuse":
		cmd = exec.Command(p.fuseBin, attrs["backing"], target)
	case "ceph-fuse":
		// As ceph-csi's FUSE mounter runs it; -f keeps it a child of ours.
		cmd = exec.Command("ceph-fuse", "-f", "-c", attrs["conf"], "-r", attrs["root"], "-o", "nonempty", target)
	case "bindfs":
		cmd = exec.Command("bindfs", "-f", "-o", "subtype=bindfs", attrs["backing"], target)
	default:
		return nil, status.Errorf(codes.InvalidArgument, "unknown server %q", attrs["server"])
	}
	logf, err := os.Create(filepath.Join(p.state, req.GetVolumeId()+".log"))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a test stops or kills the server alone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, status.Error(codes.Internal, err.Error())
	}
	go func() { _ = cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for !mounted(target) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return nil, status.Errorf(codes.Internal, "%s did not mount %s within 30s", cmd.Path, target)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.servers[target] = cmd
	pidFile := filepath.Join(p.state, req.GetVolumeId()+".pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.NodeStageVolumeResponse{}, nil
}

// NodeUnstageVolume detaches the staging mount (never waits on the
// server) and ends the server.
func (p *plugin) NodeUnstageVolume(_ context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	target := req.GetStagingTargetPath()
	log.Printf("unstage %s at %s", req.GetVolumeId(), target)
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = syscall.Unmount(target, syscall.MNT_DETACH)
	if cmd := p.servers[target]; cmd != nil {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
		_ = cmd.Process.Kill()
		delete(p.servers, target)
	}
	_ = os.Remove(filepath.Join(p.state, req.GetVolumeId()+".pid"))
	return &csi.NodeUnstageVolumeResponse{}, nil
}

// NodePublishVolume bind-mounts the staging mount at the pod's target.
func (p *plugin) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	src, target := req.GetStagingTargetPath(), req.GetTargetPath()
	log.Printf("publish %s: %s at %s", req.GetVolumeId(), src, target)
	if src == "" {
		return nil, status.Error(codes.InvalidArgument, "no staging path: only persistent volumes are served")
	}
	if mounted(target) {
		return &csi.NodePublishVolumeResponse{}, nil
	}
	// As ceph-csi does before it binds: a dead server's staging mount
	// fails here with ENOTCONN.
	if _, err := os.Stat(src); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := syscall.Mount(src, target, "", syscall.MS_BIND, ""); err != nil {
		return nil, status.Errorf(codes.Internal, "bind %s at %s: %v", src, target, err)
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume detaches the pod's bind mount and removes its
// directory, as kubelet expects.
func (p *plugin) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	target := req.GetTargetPath()
	log.Printf("unpublish %s at %s", req.GetVolumeId(), target)
	if err := syscall.Unmount(target, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
		return nil, status.Errorf(codes.Internal, "unmount %s: %v", target, err)
	}
	_ = os.Remove(target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// mounted reports whether path is a mount point, from the mount table
// alone: it never stats the path, which may be a hung FUSE mount.
func mounted(path string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescape(f[4]) == filepath.Clean(path) {
			return true
		}
	}
	return false
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
