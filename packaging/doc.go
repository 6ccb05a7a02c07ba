// Package packaging holds no code: its tests build and install what
// packaging/ ships for real. The Debian package (make deb) is installed with
// dpkg in a mount namespace of its own, and the DaemonSet's exact command line
// runs against a stand-in node namespace (testenv.NewNode) where a FUSE mount
// is made after the daemon started; the node-problem-detector plugin's command
// line runs there too.
package packaging
