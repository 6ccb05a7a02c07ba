package mounts

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// containerd's directories, defined once: package containerd and the flags
// use these.
const (
	// DefaultContainerdRoot is containerd's root directory on most nodes.
	DefaultContainerdRoot = "/var/lib/containerd"
	// ContainerdOverlayfsDir is the overlayfs snapshotter's directory
	// under containerd's root.
	ContainerdOverlayfsDir = "io.containerd.snapshotter.v1.overlayfs"
	// DefaultContainerdSnapshots is where containerd's overlayfs
	// snapshotter keeps its snapshots (<id>/fs); containerd mounts with
	// lowerdirs relative to it when the option string would be too long.
	DefaultContainerdSnapshots = DefaultContainerdRoot + "/" + ContainerdOverlayfsDir + "/snapshots"
)

// LayerRole says what a directory is to an overlay mount.
type LayerRole string

// Roles of overlay directories.
const (
	UpperLayer LayerRole = "upper" // upperdir: the writable top layer
	LowerLayer LayerRole = "lower" // lowerdir, lowerdir+: read-only layers, top first
	DataLayer  LayerRole = "data"  // datadir+ or after "::" in lowerdir: data-only, never merged
	WorkDir    LayerRole = "work"  // workdir: overlay's scratch directory
)

// Layer is one directory of an overlay mount.
type Layer struct {
	Role LayerRole
	// Dir is the directory as the inspected namespace sees it: absolute,
	// cleaned, relative options resolved.
	Dir string
	// Option is the path as the mount option gave it, unescaped.
	Option string
}

// OverlayChain is an overlay mount's layers, from its super options.
type OverlayChain struct {
	Mount *Mount
	// Layers are the merged layers, top first: the upper layer (if any),
	// then the lower layers. Only these contribute directory entries.
	Layers []Layer
	// Data are the data-only layers (datadir+, or after "::" in lowerdir).
	Data []Layer
	// Work is the workdir, empty for a read-only overlay.
	Work string
	// UserXattr is set by the userxattr option: overlay's xattrs are then
	// user.overlay.* instead of trusted.overlay.*.
	UserXattr bool
	// ContainerNamespace and Container name the containerd task whose
	// rootfs this is, when the mount point says so.
	ContainerNamespace string
	Container          string
}

// XattrPrefix is the prefix of the xattrs this overlay reads on its layers.
func (c *OverlayChain) XattrPrefix() string {
	if c.UserXattr {
		return "user.overlay."
	}
	return "trusted.overlay."
}

// Dirs is every directory the overlay uses: merged and data layers and the
// work directory.
func (c *OverlayChain) Dirs() []string {
	out := make([]string, 0, len(c.Layers)+len(c.Data)+1)
	for _, l := range c.Layers {
		out = append(out, l.Dir)
	}
	for _, l := range c.Data {
		out = append(out, l.Dir)
	}
	if c.Work != "" {
		out = append(out, c.Work)
	}
	return out
}

// ErrOverlayOptions is wrapped by every error about an overlay mount's
// options.
var ErrOverlayOptions = errors.New("overlay options")

// ParseOverlayChain reads the layers of overlay mount m from its super
// options (mountinfo's last field; the per-mount options field has none).
// Relative directories, which containerd writes when the option string gets
// long, are resolved against snapshotRoot. A layer that cannot be resolved
// makes the whole chain an error that names the mount.
func ParseOverlayChain(m *Mount, snapshotRoot string) (*OverlayChain, error) {
	c, err := parseOverlayOptions(m.VFSOptions, snapshotRoot)
	if err != nil {
		return nil, fmt.Errorf("overlay %s (mount %d): %w", m.Mountpoint, m.ID, err)
	}
	c.Mount = m
	c.ContainerNamespace, c.Container = containerdTask(m.Mountpoint)
	return c, nil
}

func parseOverlayOptions(vfsOptions, snapshotRoot string) (*OverlayChain, error) {
	var o overlayOptions
	// Commas inside values are written as \054, so a raw split is exact.
	for _, raw := range strings.Split(vfsOptions, ",") {
		opt, err := unescapeOctal(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: option %q: %w", ErrOverlayOptions, raw, err)
		}
		if err := o.add(opt); err != nil {
			return nil, err
		}
	}
	if o.legacy && o.newAPI {
		return nil, fmt.Errorf("%w: both lowerdir and lowerdir+/datadir+", ErrOverlayOptions)
	}
	if len(o.lowers) == 0 {
		return nil, fmt.Errorf("%w: no lowerdir", ErrOverlayOptions)
	}
	return o.chain(snapshotRoot)
}

// overlayOptions are the layer options of one overlay mount, as given.
type overlayOptions struct {
	upper, work    string
	legacy, newAPI bool // lowerdir=; lowerdir+= and datadir+=
	lowers, datas  []string
	userXattr      bool
}

// add takes one option, unescaped.
func (o *overlayOptions) add(opt string) error {
	key, val, hasVal := strings.Cut(opt, "=")
	switch key {
	case "lowerdir":
		if o.legacy {
			return fmt.Errorf("%w: lowerdir given twice", ErrOverlayOptions)
		}
		o.legacy = true
		l, d, err := splitLowerdir(val)
		if err != nil {
			return fmt.Errorf("%w: lowerdir=%q: %w", ErrOverlayOptions, val, err)
		}
		o.lowers, o.datas = append(o.lowers, l...), append(o.datas, d...)
	case "lowerdir+", "datadir+":
		// One path per option, taken as is: the kernel does not apply
		// overlay's backslash escapes to these.
		if val == "" {
			return fmt.Errorf("%w: empty %s", ErrOverlayOptions, key)
		}
		o.newAPI = true
		if key == "datadir+" {
			o.datas = append(o.datas, val)
		} else if len(o.datas) > 0 {
			return fmt.Errorf("%w: lowerdir+=%q after datadir+", ErrOverlayOptions, val)
		} else {
			o.lowers = append(o.lowers, val)
		}
	case "upperdir", "workdir":
		v, err := unescapeOverlay(val)
		if err != nil || v == "" {
			return fmt.Errorf("%w: %s=%q: empty or bad escape", ErrOverlayOptions, key, val)
		}
		if key == "upperdir" {
			o.upper = v
		} else {
			o.work = v
		}
	case "userxattr":
		o.userXattr = !hasVal
	}
	return nil
}

// chain resolves the layers against snapshotRoot, top first.
func (o *overlayOptions) chain(snapshotRoot string) (*OverlayChain, error) {
	c := &OverlayChain{UserXattr: o.userXattr}
	resolve := func(role LayerRole, opts ...string) ([]Layer, error) {
		var out []Layer
		for _, opt := range opts {
			dir, err := resolveLayer(opt, snapshotRoot)
			if err != nil {
				return nil, fmt.Errorf("%s layer %q: %w", role, opt, err)
			}
			out = append(out, Layer{Role: role, Dir: dir, Option: opt})
		}
		return out, nil
	}
	var err error
	if o.upper != "" {
		if c.Layers, err = resolve(UpperLayer, o.upper); err != nil {
			return nil, err
		}
	}
	lowers, err := resolve(LowerLayer, o.lowers...)
	if err != nil {
		return nil, err
	}
	c.Layers = append(c.Layers, lowers...)
	if c.Data, err = resolve(DataLayer, o.datas...); err != nil {
		return nil, err
	}
	if o.work != "" {
		work, err := resolve(WorkDir, o.work)
		if err != nil {
			return nil, err
		}
		c.Work = work[0].Dir
	}
	return c, nil
}

// ErrUnresolvableLayer is wrapped when a layer directory cannot be placed in
// the inspected namespace.
var ErrUnresolvableLayer = errors.New("unresolvable layer")

func resolveLayer(opt, snapshotRoot string) (string, error) {
	if path.IsAbs(opt) {
		return path.Clean(opt), nil
	}
	// The kernel resolved it against the mounting process's working
	// directory, which mountinfo does not record; containerd's is its
	// snapshotter root.
	if snapshotRoot == "" || !path.IsAbs(snapshotRoot) {
		return "", fmt.Errorf("%w: relative path and no absolute snapshotter root to resolve it against", ErrUnresolvableLayer)
	}
	rel := path.Clean(opt)
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: relative path leaves the snapshotter root %s", ErrUnresolvableLayer, snapshotRoot)
	}
	return path.Join(snapshotRoot, rel), nil
}

// splitLowerdir splits a legacy lowerdir value (already octal-unescaped) on
// unescaped colons and undoes overlay's backslash escapes. "::" starts the
// data-only layers.
func splitLowerdir(v string) (lowers, datas []string, err error) {
	var (
		parts []string
		cur   strings.Builder
		data  []bool // whether parts[i] came after "::"
		inDat bool
	)
	for i := 0; i < len(v); i++ {
		switch ch := v[i]; ch {
		case '\\':
			if i+1 == len(v) {
				return nil, nil, errors.New("trailing backslash")
			}
			i++
			cur.WriteByte(v[i])
		case ':':
			parts, data = append(parts, cur.String()), append(data, inDat)
			cur.Reset()
			if i+1 < len(v) && v[i+1] == ':' {
				i++
				inDat = true
			}
		default:
			cur.WriteByte(ch)
		}
	}
	parts, data = append(parts, cur.String()), append(data, inDat)
	for i, p := range parts {
		if p == "" {
			return nil, nil, fmt.Errorf("empty layer %d", i+1)
		}
		if data[i] {
			datas = append(datas, p)
		} else {
			lowers = append(lowers, p)
		}
	}
	return lowers, datas, nil
}

// unescapeOverlay undoes overlay's backslash escapes (\: \, \\) in upperdir
// and workdir.
func unescapeOverlay(v string) (string, error) {
	if !strings.Contains(v, `\`) {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' {
			if i+1 == len(v) {
				return "", errors.New("trailing backslash")
			}
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String(), nil
}

// unescapeOctal undoes the kernel's \ooo escapes in a mountinfo field.
// moby/sys/mountinfo does this for the mount point, root and source but
// leaves the super options as the kernel wrote them.
func unescapeOctal(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if len(s)-i < 4 {
			return "", fmt.Errorf("short octal escape at byte %d", i)
		}
		n, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return "", fmt.Errorf("bad octal escape %q at byte %d", s[i:i+4], i)
		}
		b.WriteByte(byte(n))
		i += 3
	}
	return b.String(), nil
}

// containerdTask returns the containerd namespace and container id when
// mountpoint is a task's rootfs: <state>/io.containerd.runtime.v2.task/<ns>/<id>/rootfs
// (v1 shims: io.containerd.runtime.v1.linux). The state directory is
// /run/containerd by default and elsewhere in some distributions
// (/run/k3s/containerd), so only the runtime's own part is matched.
func containerdTask(mountpoint string) (ns, id string) {
	for _, marker := range []string{"/io.containerd.runtime.v2.task/", "/io.containerd.runtime.v1.linux/"} {
		i := strings.LastIndex(mountpoint, marker)
		if i < 0 {
			continue
		}
		p := strings.Split(mountpoint[i+len(marker):], "/")
		if len(p) == 3 && p[2] == "rootfs" && p[0] != "" && p[1] != "" {
			return p[0], p[1]
		}
	}
	return "", ""
}
