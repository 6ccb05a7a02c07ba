package kubeapi

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// maxMessage is the most bytes of an event's message (events.k8s.io's
// limit for a note; core/v1 events are shown by the same tools).
const maxMessage = 1024

// item is one thing for the sender: an event the recorder made, or the
// claim events of a pod's PersistentVolume, which need a lookup first.
type item struct {
	ev *v1.Event
	// set once the correlator saw ev: retries send the same result
	correlated bool
	patch      []byte
	claim      *claimJob
	// refusals so far: an API server starting refuses (401, 403) until
	// its caches are warm, so a refusal is retried a few times
	refusals int
}

// maxRefusals is how often an item refused (forbidden) is retried before
// it is dropped: about half a minute of backoff.
const maxRefusals = 5

// retryItem reports whether an item that failed for reason is to be
// retried, counting refusals.
func (it *item) retry(reason string) bool {
	if retryable(reason) {
		return true
	}
	if reason == "forbidden" && it.refusals < maxRefusals {
		it.refusals++
		return true
	}
	return false
}

// claimJob is the event a pod got, to repeat on the claim of the
// PersistentVolume named pv when there is one.
type claimJob struct {
	pv, handle, driver, podNS, podName string
	typ, reason, message               string
}

// activeProblem is a problem an event was sent for: the first finding of
// its key, for the clearing event.
type activeProblem struct{ f finding.Finding }

// eventKey identifies a problem for events: the pod, the check and the
// volume. Two mounts of one volume (its mount and a subPath) with the same
// check are one problem for the pod's user; a remount (a new mount ID)
// does not make a new one.
func eventKey(f *finding.Finding) string {
	return f.PodUID + "\x00" + string(f.Check) + "\x00" + f.Volume
}

// namesPod reports whether f is a warning or critical finding about a pod
// this node's files name (UID, namespace and name).
func namesPod(f *finding.Finding) bool {
	return f.Severity.Rank() >= finding.Warning.Rank() && f.PodUID != "" && f.PodNamespace != "" && f.PodName != ""
}

// diffEvents sends a Warning for each problem that appeared since the last
// state and a Normal for each that cleared.
func (r *Reporter) diffEvents(findings []finding.Finding, now time.Time) {
	next := map[string]bool{}
	for i := range findings {
		f := &findings[i]
		if !namesPod(f) {
			continue
		}
		k := eventKey(f)
		if next[k] {
			continue
		}
		next[k] = true
		if _, ok := r.active[k]; !ok {
			r.active[k] = activeProblem{f: *f}
			r.emit(f, typeWarning, Reason(f.Check), warningMessage(f))
		}
	}
	var cleared []string
	for k := range r.active {
		if !next[k] {
			cleared = append(cleared, k)
		}
	}
	sort.Strings(cleared)
	for _, k := range cleared {
		f := r.active[k].f
		delete(r.active, k)
		r.emit(&f, typeNormal, ClearedReason(f.Check), clearedMessage(&f, now))
	}
}

// emit records an event on f's pod and queues the same for its claim.
func (r *Reporter) emit(f *finding.Finding, typ, reason, msg string) {
	pod := &v1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: f.PodNamespace, Name: f.PodName, UID: types.UID(f.PodUID)}
	r.rec.Event(pod, typ, reason, msg)
	if f.Kind == mounts.PodVolume && f.Volume != "" {
		r.enqueue(item{claim: &claimJob{pv: f.Volume, handle: f.VolumeHandle, driver: f.CSIDriver, podNS: f.PodNamespace,
			podName: f.PodName, typ: typ, reason: reason, message: msg}})
	}
}

// volumeWords names f's volume and what serves it.
func volumeWords(f *finding.Finding) string {
	var b strings.Builder
	fmt.Fprintf(&b, "volume %q", f.Volume)
	if f.CSIDriver != "" {
		fmt.Fprintf(&b, ", CSI driver %s", f.CSIDriver)
	} else if f.FSType != "" {
		fmt.Fprintf(&b, ", fstype %s", f.FSType)
	}
	fmt.Fprintf(&b, ", mount %s", f.MountPoint)
	return b.String()
}

func warningMessage(f *finding.Finding) string {
	return truncate(fmt.Sprintf("%s (%s) on %s, since %s: %s", f.Check, f.Severity, volumeWords(f),
		f.FirstSeen.UTC().Format(time.RFC3339), f.Message))
}

func clearedMessage(f *finding.Finding, now time.Time) string {
	return truncate(fmt.Sprintf("%s cleared on %s (seen from %s to %s)", f.Check, volumeWords(f),
		f.FirstSeen.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
}

// truncate cuts s to maxMessage bytes on a rune boundary.
func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	s = s[:maxMessage-3]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}

// enqueue queues an item, counting the oldest it drops.
func (r *Reporter) enqueue(it item) {
	if r.q.push(it) {
		r.m.events.WithLabelValues("dropped_queue_full").Inc()
	}
}

// send delivers queued items one at a time; an item that failed because
// the API server is slow or down is retried first, after a growing pause.
func (r *Reporter) send(ctx context.Context) {
	delay := firstRetryDelay
	for {
		it, ok := r.q.pop(ctx)
		if !ok {
			return
		}
		if err := r.deliver(ctx, &it); err != nil {
			if r.q.pushFront(it) {
				r.m.events.WithLabelValues("dropped_queue_full").Inc()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, maxRetryDelay)
			continue
		}
		delay = firstRetryDelay
	}
}

// flush sends what is still queued until ctx is done or one fails; the
// rest is abandoned.
func (r *Reporter) flush(ctx context.Context) {
	for ctx.Err() == nil {
		it, ok := r.q.tryPop()
		if !ok {
			return
		}
		if r.deliver(ctx, &it) != nil {
			break
		}
	}
	for {
		if _, ok := r.q.tryPop(); !ok {
			return
		}
		r.m.events.WithLabelValues("abandoned").Inc()
	}
}

// deliver sends one item. It returns an error only when the item should be
// retried.
func (r *Reporter) deliver(ctx context.Context, it *item) error {
	if it.claim != nil {
		return r.deliverClaim(ctx, it)
	}
	if !it.correlated {
		res, err := r.corr.EventCorrelate(it.ev)
		if err != nil {
			r.log.Debug("event correlation", zap.Error(err))
		}
		if res == nil || res.Skip {
			r.m.events.WithLabelValues("skipped").Inc()
			return nil
		}
		it.ev, it.patch, it.correlated = res.Event, res.Patch, true
	}
	ev, reason, err := r.write(ctx, it)
	if err == nil {
		r.corr.UpdateState(ev)
		r.m.events.WithLabelValues("sent").Inc()
		return nil
	}
	if it.retry(reason) {
		return err
	}
	r.m.events.WithLabelValues("rejected").Inc()
	return nil
}

// write creates the event, or patches it when the correlator counted a
// repeat of one already written.
func (r *Reporter) write(ctx context.Context, it *item) (*v1.Event, string, error) {
	if it.ev.Count > 1 && it.patch != nil {
		rctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		ev, err := r.api.PatchEvent(rctx, it.ev, it.patch)
		cancel()
		reason := r.m.request(reqPatchEvent, err)
		if err == nil || !apierrors.IsNotFound(err) {
			r.said.result(reqPatchEvent, reason, err)
			return ev, reason, err
		}
	}
	e := it.ev.DeepCopy()
	e.ResourceVersion = ""
	rctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	ev, err := r.api.CreateEvent(rctx, e)
	reason := r.m.request(reqCreateEvent, err)
	r.said.result(reqCreateEvent, reason, err)
	return ev, reason, err
}

// claimEntry is what a PersistentVolume said of its claim.
type claimEntry struct {
	claim *v1.ObjectReference // nil: no claim to tell
	until time.Time
}

// deliverClaim records the job's event on the claim of its volume, when
// the volume is a PersistentVolume bound to a claim of the pod's namespace
// (and, for CSI, of the same driver and handle): a pod volume directory is
// named after its PersistentVolume, and an inline volume's name is no
// PersistentVolume's, or one bound elsewhere.
func (r *Reporter) deliverClaim(ctx context.Context, it *item) error {
	j := it.claim
	now := time.Now()
	e, ok := r.claims[j.pv]
	if !ok || now.After(e.until) {
		rctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		pv, err := r.api.GetPersistentVolume(rctx, j.pv)
		cancel()
		reason := r.m.request(reqGetPV, err)
		if reason != "not_found" {
			r.said.result(reqGetPV, reason, err)
		}
		switch {
		case err != nil && reason != "not_found" && it.retry(reason):
			return err
		case err != nil:
			e = claimEntry{} // refused or no such PersistentVolume: no claim
		default:
			e = claimEntry{claim: claimOf(pv, j)}
		}
		e.until = now.Add(claimCacheTTL)
		if len(r.claims) >= maxClaimCacheSize {
			clear(r.claims)
		}
		r.claims[j.pv] = e
	}
	if e.claim != nil {
		r.rec.Event(e.claim, j.typ, j.reason, truncate("pod "+j.podNS+"/"+j.podName+": "+j.message))
	}
	return nil
}

func claimOf(pv *v1.PersistentVolume, j *claimJob) *v1.ObjectReference {
	c := pv.Spec.ClaimRef
	if c == nil || c.Name == "" || c.Namespace != j.podNS {
		return nil
	}
	if csi := pv.Spec.CSI; csi != nil && ((j.handle != "" && csi.VolumeHandle != j.handle) || (j.driver != "" && csi.Driver != j.driver)) {
		return nil
	}
	return &v1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: c.Namespace, Name: c.Name, UID: c.UID}
}
