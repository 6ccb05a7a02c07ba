package export

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// collector is a prometheus.Collector of the State load returns (nil:
// nothing known yet), built afresh on each scrape, with the dropped
// series summed over scrapes: the reference the Exposition's encoded
// output is compared with, and the tests' way to render one State.
type collector struct {
	m       *Metrics
	load    func() *State
	dropped atomic.Uint64
}

// NewMetrics returns a collector; maxProblemSeries caps the per-problem
// series (0: no series).
func NewMetrics(load func() *State, maxProblemSeries int) *collector {
	return &collector{m: newMetrics(maxProblemSeries), load: load}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.load()
	if st == nil {
		st = &State{}
	}
	dropped := c.m.collectState(ch, st)
	counter(ch, descDropped, c.dropped.Add(uint64(dropped)))
}
