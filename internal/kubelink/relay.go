package kubelink

import (
	"bufio"
	"bytes"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// relay exports the helper's metrics as the daemon's own: the families of
// its latest frame, while it runs. It is an unchecked collector (it
// describes nothing): the helper's series are known only from its frames.
type relay struct {
	mu       sync.Mutex
	families map[string]*dto.MetricFamily
}

// read takes frames from the helper until its output ends.
func (r *relay) read(br *bufio.Reader) error {
	for {
		frame, err := readFrame(br)
		if err != nil {
			return err
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(frame))
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.families = fams
		r.mu.Unlock()
	}
}

// clear forgets the frames of a helper that exited.
func (r *relay) clear() {
	r.mu.Lock()
	r.families = nil
	r.mu.Unlock()
}

func (r *relay) Describe(chan<- *prometheus.Desc) {}

func (r *relay) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	fams := r.families
	r.mu.Unlock()
	for _, f := range fams {
		var typ prometheus.ValueType
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			typ = prometheus.CounterValue
		case dto.MetricType_GAUGE:
			typ = prometheus.GaugeValue
		case dto.MetricType_UNTYPED:
			typ = prometheus.UntypedValue
		default:
			continue // the helper has counters and gauges only
		}
		for _, m := range f.GetMetric() {
			names, values := labels(m)
			desc := prometheus.NewDesc(f.GetName(), f.GetHelp(), names, nil)
			v := m.GetCounter().GetValue()
			switch typ {
			case prometheus.GaugeValue:
				v = m.GetGauge().GetValue()
			case prometheus.UntypedValue:
				v = m.GetUntyped().GetValue()
			}
			if pm, err := prometheus.NewConstMetric(desc, typ, v, values...); err == nil {
				ch <- pm
			}
		}
	}
}

func labels(m *dto.Metric) (names, values []string) {
	ls := append([]*dto.LabelPair(nil), m.GetLabel()...)
	sort.Slice(ls, func(i, j int) bool { return ls[i].GetName() < ls[j].GetName() })
	for _, l := range ls {
		names = append(names, l.GetName())
		values = append(values, l.GetValue())
	}
	return names, values
}
