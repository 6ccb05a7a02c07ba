package walk

import (
	"path"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// shared is what the workers of a parallel run (runParallel) share: the
// budget left (<0: unlimited), the entries done, for the rate, and the
// signal that one of them stopped.
type shared struct {
	limited bool
	left    atomic.Int64
	done    atomic.Int64
	stop    atomic.Bool
}

// runParallel is Run of a whole pass by Limits.Workers workers, each a
// copy of w for the run (its own counters, xattr buffer and root index,
// the same snapshot, inspected root and visit), that take the roots in
// order. Their counters are summed into w at the end; root errors come in
// root order, as from a sequential pass.
func (w *Walker) runParallel() (completed bool, rootErrs []error, err error) {
	sh := &shared{limited: w.left >= 0}
	sh.left.Store(int64(w.left))
	var next atomic.Int64
	workers := make([]*Walker, min(w.Limits.Workers, len(w.Roots)))
	errs := make([][]*RootError, len(workers))
	stopped := make([]bool, len(workers))
	var wg sync.WaitGroup
	for i := range workers {
		c := &Walker{Limits: w.Limits, host: w.host, Roots: w.Roots, snap: w.snap, root: w.root, left: -1,
			started: w.started, ctx: w.ctx, procfs: w.procfs, visit: w.visit, shared: sh}
		workers[i] = c
		wg.Go(func() {
			defer c.closeBases()
			for !sh.stop.Load() {
				r := int(next.Add(1) - 1)
				if r >= len(w.Roots) {
					return
				}
				c.next, c.cursorSet = r, false
				fd, mnt, err := c.OpenRoot(w.Roots[r])
				if err != nil {
					errs[i] = append(errs[i], &RootError{Index: r, Err: err})
					continue
				}
				stop := c.walkDir(fd, mnt, path.Clean(w.Roots[r].Path), "", 0, nil)
				unix.Close(fd)
				if stop {
					stopped[i] = true
					sh.stop.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	anyStopped := false
	var byRoot []*RootError
	for i, c := range workers {
		w.Done += c.Done
		w.Stats.Entries += c.Stats.Entries
		w.SkippedMounts += c.SkippedMounts
		w.tooDeep += c.tooDeep
		w.walkErrors += c.walkErrors
		w.mountLookups += c.mountLookups
		if c.lastErr != "" {
			w.lastErr = c.lastErr
		}
		if c.stopErr != nil && w.stopErr == nil {
			w.stopErr = c.stopErr
		}
		byRoot = append(byRoot, errs[i]...)
		anyStopped = anyStopped || stopped[i]
	}
	slices.SortFunc(byRoot, func(a, b *RootError) int { return a.Index - b.Index })
	for _, e := range byRoot {
		rootErrs = append(rootErrs, e)
	}
	if w.left > 0 {
		w.left = int(max(sh.left.Load(), 0))
	}
	w.cursor = nil
	w.InPass = false // a parallel pass is walked whole or not resumed
	if anyStopped {
		w.Stats.Complete = false
		if w.stopErr != nil {
			return false, rootErrs, w.stopErr
		}
		w.Stats.BudgetExhausted++
		return false, rootErrs, nil
	}
	w.next = len(w.Roots)
	w.Stats.Passes++
	w.Stats.Complete = true
	return true, rootErrs, nil
}

// spendShared is spend for a worker of a parallel run: the budget is the
// workers' together, the rate counts every worker's entries, and any
// worker's stop stops them all.
func (w *Walker) spendShared() bool {
	sh := w.shared
	if sh.stop.Load() {
		return false
	}
	if w.Done&255 == 0 && !w.pace(sh.done.Load()) {
		return false
	}
	if sh.limited && sh.left.Add(-1) < 0 {
		return false
	}
	sh.done.Add(1)
	w.Done++
	w.Stats.Entries++
	return true
}
