// Command image builds mountwatchd's container image offline: no registry,
// no Docker daemon, no base image. It puts the static binaries (one per
// platform) with the license on an empty base with go-containerregistry's
// mutate package and writes an OCI image index, one manifest per platform,
// as an OCI archive (a tar of an OCI image layout, as `skopeo copy
// oci-archive:` writes), which `ctr image import`, `skopeo copy` and
// `podman load` read. `make image` runs it:
//
//	go run . -out dist/mountwatchd-image.tar -ref ghcr.io/mountwatchd/mountwatchd:v0.1.0 \
//	  -version v0.1.0 -revision <commit> -created <RFC 3339> -license LICENSE \
//	  -npd packaging/kubernetes/npd-custom-plugin.json \
//	  -binary linux/amd64=dist/build/linux-amd64/mountwatchd -binary linux/arm64=...
//
// Every timestamp is -created (the commit's time), so the same inputs give
// the same digests.
//
// It is a module of its own so that go-containerregistry and what it needs
// stay out of mountwatchd's go.mod: only this build tool uses them.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's defaults. The user is nobody: `docker run IMAGE --once` and
// --mountinfo analysis need no privileges, and neither does the
// node-problem-detector init container that copies the binary out. The
// DaemonSet runs it as uid 0 with three capabilities (runAsUser: 0 in
// packaging/kubernetes/daemonset.yaml), which it needs to reach the node
// through /proc/1/root: Kubernetes grants added capabilities to root only.
const (
	binPath    = "/usr/bin/mountwatchd"
	helperPath = "/usr/bin/mountwatchd-kube"
	user       = "65534:65534"
	metricPort = "9842/tcp"
	source     = "https://github.com/mountwatchd/mountwatchd"
)

type binaries map[string]string // "linux/amd64" -> path

func (b binaries) String() string { return fmt.Sprint(map[string]string(b)) }
func (b binaries) Set(s string) error {
	plat, path, ok := strings.Cut(s, "=")
	if !ok || !strings.HasPrefix(plat, "linux/") || path == "" {
		return fmt.Errorf("want linux/ARCH=PATH, got %q", s)
	}
	b[plat] = path
	return nil
}

func main() {
	bins, helpers := binaries{}, binaries{}
	var (
		out      = flag.String("out", "dist/mountwatchd-image.tar", "OCI archive to write")
		ref      = flag.String("ref", "ghcr.io/mountwatchd/mountwatchd:dev", "image reference recorded in the archive (what ctr image import names it)")
		ver      = flag.String("version", "dev", "version label")
		revision = flag.String("revision", "unknown", "revision label")
		created  = flag.String("created", "1970-01-01T00:00:00Z", "creation time (RFC 3339), also every file's mtime")
		license  = flag.String("license", "LICENSE", "license file, shipped as /usr/share/doc/mountwatchd/LICENSE")
		npd      = flag.String("npd", "", "node-problem-detector plugin config, shipped as /usr/share/mountwatchd/npd-custom-plugin.json")
	)
	flag.Var(bins, "binary", "linux/ARCH=PATH of a static mountwatchd binary (repeatable; one manifest each)")
	flag.Var(helpers, "helper", "linux/ARCH=PATH of the static mountwatchd-kube binary for that platform, shipped as "+helperPath+" (one per -binary)")
	flag.Parse()
	if err := build(*out, *ref, *ver, *revision, *created, *license, *npd, bins, helpers); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
}

func build(out, ref, ver, revision, created, license, npd string, bins, helpers binaries) error {
	if len(bins) == 0 {
		return fmt.Errorf("no -binary given")
	}
	for p := range bins {
		if helpers[p] == "" {
			return fmt.Errorf("-binary %s without -helper %s=PATH (mountwatchd-kube)", p, p)
		}
	}
	when, err := time.Parse(time.RFC3339, created)
	if err != nil {
		return fmt.Errorf("-created: %w", err)
	}
	when = when.UTC()
	extra := map[string]file{}
	if extra["usr/share/doc/mountwatchd/LICENSE"], err = readFile(license, 0o644); err != nil {
		return err
	}
	if npd != "" {
		if extra["usr/share/mountwatchd/npd-custom-plugin.json"], err = readFile(npd, 0o644); err != nil {
			return err
		}
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       "mountwatchd",
		"org.opencontainers.image.description": "Finds mounts that look fine and are not, and names the pod and volume they break",
		"org.opencontainers.image.source":      source,
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.version":     ver,
		"org.opencontainers.image.revision":    revision,
		"org.opencontainers.image.created":     when.Format(time.RFC3339),
	}

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, plat := range slices.Sorted(func(yield func(string) bool) {
		for p := range bins {
			if !yield(p) {
				return
			}
		}
	}) {
		bin, err := readFile(bins[plat], 0o755)
		if err != nil {
			return err
		}
		helper, err := readFile(helpers[plat], 0o755)
		if err != nil {
			return err
		}
		files := map[string]file{strings.TrimPrefix(binPath, "/"): bin, strings.TrimPrefix(helperPath, "/"): helper}
		for k, v := range extra {
			files[k] = v
		}
		arch := strings.TrimPrefix(plat, "linux/")
		img, err := platformImage(arch, files, labels, when)
		if err != nil {
			return fmt.Errorf("%s: %w", plat, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: plainImage{img},
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	idx = mutate.Annotations(idx, map[string]string{
		"org.opencontainers.image.source":   source,
		"org.opencontainers.image.version":  ver,
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.created":  when.Format(time.RFC3339),
	}).(v1.ImageIndex)

	dir, err := os.MkdirTemp("", "mountwatchd-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	// ref.name is the reference skopeo's oci-archive transport records;
	// containerd's importer reads io.containerd.image.name first.
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref,
		"io.containerd.image.name":          ref,
	})); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return tarDir(dir, out, when)
}

// plainImage is an image whose index descriptor has no artifactType:
// go-containerregistry fills in the config's media type, which the image
// spec reserves for artifacts, not images.
type plainImage struct{ v1.Image }

func (plainImage) ArtifactType() (string, error) { return "", nil }

type file struct {
	data []byte
	mode int64
}

func readFile(path string, mode int64) (file, error) {
	b, err := os.ReadFile(path)
	return file{b, mode}, err
}

// platformImage is one platform's image: a single layer with files (and
// their parent directories), owned by root, on an empty base.
func platformImage(arch string, files map[string]file, labels map[string]string, when time.Time) (v1.Image, error) {
	layerTar, err := layerTar(files, when)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	base, err = mutate.ConfigFile(base, &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Created:      v1.Time{Time: when},
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint:   []string{binPath},
			User:         user,
			Env:          []string{"PATH=/usr/bin"},
			WorkingDir:   "/",
			ExposedPorts: map[string]struct{}{metricPort: {}},
			Labels:       labels,
		},
	})
	if err != nil {
		return nil, err
	}
	return mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		Created:   v1.Time{Time: when},
		CreatedBy: "mountwatchd packaging/image: " + binPath + " (static), license",
	}})
}

// layerTar is a tar of files with their parent directories, sorted, every
// entry root-owned with mtime when.
func layerTar(files map[string]file, when time.Time) ([]byte, error) {
	dirs := map[string]bool{}
	for name := range files {
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			dirs[d+"/"] = true
		}
	}
	var names []string
	for d := range dirs {
		names = append(names, d)
	}
	for f := range files {
		names = append(names, f)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		hdr := &tar.Header{Name: name, ModTime: when, Uname: "root", Gname: "root", Format: tar.FormatPAX}
		if strings.HasSuffix(name, "/") {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		} else {
			f := files[name]
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, f.mode, int64(len(f.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(files[name].data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tarDir writes the OCI layout in dir as an archive: sorted, mtime when,
// written to a temporary file and renamed into place.
func tarDir(dir, out string, when time.Time) error {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".mountwatchd-image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	tw := tar.NewWriter(tmp)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: when, Mode: 0o644, Format: tar.FormatPAX}
		if d.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
			return tw.WriteHeader(hdr)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = tmp.Close()
	}
	if err != nil {
		_ = tmp.Close()
		return err
	}
	return os.Rename(tmp.Name(), out)
}
