// Package packaging holds no code: its tests build and install what
// packaging/ ships for real, and hold the shipped files to each other and to
// the docs. The Debian package and the RPM are installed in throwaway roots,
// the image runs under a real containerd, the DaemonSet's exact command line
// runs against a stand-in node namespace (testenv.NewNode) where a FUSE mount
// is made after the daemon started, and so does the node-problem-detector
// plugin's; the chart is linted, rendered and decoded strictly, the alerting
// rules and the dashboard are checked with promtool, and every alert's
// runbook_url must lead to a runbook page in docs/ (docs_test.go).
//
// It is not where the daemon's behaviour is tested: cmd/mountwatchd and the
// internal packages do that.
package packaging
