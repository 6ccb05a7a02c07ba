// Package e2e holds the end-to-end suite: mountwatchd's chart deployed on
// a real one-node Kubernetes (internal/testenv/kube) and the brief's
// failures made on real pods with real CSI volumes. Its tests carry the
// build tag e2e: `make e2e` builds the Kubernetes binaries and the image and
// runs them (as root); `make test` runs them after the rest of the suite.
// It is not where a check's behaviour is tested (each package's own tests
// do that): it proves the shipped chart and image on a real node.
package e2e
