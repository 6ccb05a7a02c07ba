// Package kubeapi tells the Kubernetes API server what mountwatchd finds,
// where Kubernetes users look, when an operator turns it on: a Warning event
// on each pod a problem breaks when it appears and a Normal one when it
// clears (and the same on the pod's claim when the volume is a
// PersistentVolume), a node condition, and, separately, a NoSchedule taint
// while a critical problem lasts.
//
// Its one job is that reporting. It runs in mountwatchd-kube, never in the
// daemon (internal/kubelink says why). It takes the daemon's snapshots
// (Reporter.Publish, which never blocks) and works on its own goroutines:
// events go through client-go's recorder and correlator (aggregation and
// the per-object rate limit of Kubernetes' own components) into a bounded
// queue that drops the oldest, and out with a deadline per request; the
// condition and the taint are synced by a goroutine of their own. The API
// being slow, down or refusing never holds a check, a scrape or the journal;
// metrics count its errors and show the queue.
//
// Do not use it for anything that must reach the API server: an event may
// be dropped (queue full, rate limited, refused), by design.
package kubeapi
