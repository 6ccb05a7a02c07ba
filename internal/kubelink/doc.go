// Package kubelink is the daemon's side of telling the Kubernetes API
// server what mountwatchd finds: the settings of that reporting (the
// --kube.* flags, shared by both binaries and validated once), and the
// link to mountwatchd-kube, the helper process that does the talking.
//
// The reporting itself (events, the node condition, the taint) lives in
// internal/kubeapi and runs only in mountwatchd-kube, never in the daemon:
// client-go would add 12 MB to the daemon's binary and 7 MiB to its idle
// RSS whether reporting is on or off, and a process of its own means the
// API server being slow, down or refusing cannot hold a check, a scrape or
// the journal even through a wedged library. The daemon starts the helper
// only when a switch is on, hands it the latest findings over a pipe
// (never waiting: a state the helper has not yet read is replaced by a
// newer one, and counted), restarts it when it exits, and exports the
// helper's metrics as its own.
//
// It is not for anything that must reach the API server: reporting is best
// effort by design.
package kubelink
