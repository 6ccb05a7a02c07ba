package export

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/crc32"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Exposition serves /metrics. The metric families that describe a published
// State (every mountwatchd_* series but the per-scrape dropped counter) are
// gathered once per State, and encoded once per State and format (text,
// OpenMetrics, protobuf; plain and gzip), then served as bytes to every
// scraper. What changes on every scrape (the Go runtime's and the process's
// metrics, promhttp's, mountwatchd_problem_series_dropped_total) comes from
// a live registry gathered per scrape and merged in by name, so the body is
// what promhttp.HandlerFor would serve from one registry holding both.
//
// A scrape never waits for the daemon's loop: the daemon only stores a new
// State (Publish); the first scrape of it in a format encodes it while
// concurrent scrapes of the same format wait for that one encoding.
type Exposition struct {
	metrics *Metrics
	live    prometheus.Gatherer
	cur     atomic.Pointer[published]
	formats []expfmt.Format
	// dropped sums, over scrapes, the problem series the cap left out of
	// the state each scrape served.
	dropped atomic.Uint64
	errors  *prometheus.CounterVec
}

// NewExposition returns an Exposition serving an empty State until the
// first Publish, with at most maxProblemSeries mountwatchd_problem series.
// It registers its own per-scrape metrics in live
// (mountwatchd_problem_series_dropped_total,
// promhttp_metric_handler_errors_total), and gathers live on each scrape.
func NewExposition(maxProblemSeries int, live *prometheus.Registry) *Exposition {
	e := &Exposition{
		metrics: NewMetrics(func() *State { return nil }, maxProblemSeries),
		live:    live,
		formats: expfmt.DefaultOpenMetricsAcceptedFormats(),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promhttp_metric_handler_errors_total",
			Help: "Total number of internal errors encountered by the promhttp metric handler.",
		}, []string{"cause"}),
	}
	e.errors.WithLabelValues("gathering")
	e.errors.WithLabelValues("encoding")
	live.MustRegister(e.errors, droppedCollector{e})
	e.Publish(&State{})
	return e
}

// Publish makes st the State every later scrape serves. It only stores st:
// the encoding is made by the first scrape that asks for it.
func (e *Exposition) Publish(st *State) {
	if st == nil {
		st = &State{}
	}
	e.cur.Store(&published{st: st, encodings: map[encodingKey]*encoding{}})
}

// droppedCollector is mountwatchd_problem_series_dropped_total, live.
type droppedCollector struct{ e *Exposition }

func (c droppedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descDropped }
func (c droppedCollector) Collect(ch chan<- prometheus.Metric) {
	counter(ch, descDropped, c.e.dropped.Load())
}

// stateCollector is every metric of one State but the dropped counter.
type stateCollector struct {
	m       *Metrics
	st      *State
	dropped *int
}

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		if d != descDropped {
			ch <- d
		}
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	*c.dropped = c.m.collectState(ch, c.st)
}

// published is one State and what was made of it.
type published struct {
	st *State

	gathered sync.Once
	mfs      []*dto.MetricFamily // sorted by name
	dropped  int
	gatherOK bool

	mu        sync.Mutex
	encodings map[encodingKey]*encoding
}

type encodingKey struct {
	format expfmt.Format
	gzip   bool
}

// encoding is a published State's families in one format: per family its
// bytes and, for gzip, an independent DEFLATE segment of them (no reference
// to earlier data, ending in a sync flush on a byte boundary), so segments
// made at different times concatenate into one valid stream.
type encoding struct {
	once    sync.Once
	names   []string
	plain   [][]byte
	deflate [][]byte
	trailer []byte // OpenMetrics' "# EOF"
	errs    int
}

func (p *published) gather(m *Metrics) {
	p.gathered.Do(func() {
		reg := prometheus.NewRegistry()
		reg.MustRegister(stateCollector{m, p.st, &p.dropped})
		var err error
		p.mfs, err = reg.Gather()
		p.gatherOK = err == nil
	})
}

func (p *published) encoding(k encodingKey) *encoding {
	p.mu.Lock()
	enc := p.encodings[k]
	if enc == nil {
		enc = &encoding{}
		p.encodings[k] = enc
	}
	p.mu.Unlock()
	enc.once.Do(func() {
		for _, mf := range p.mfs {
			b, err := encodeFamily(k.format, mf)
			if err != nil {
				enc.errs++
				continue
			}
			enc.names = append(enc.names, mf.GetName())
			enc.plain = append(enc.plain, b)
			if k.gzip {
				enc.deflate = append(enc.deflate, deflateSegment(flate.DefaultCompression, b))
			}
		}
		enc.trailer = trailer(k.format)
	})
	return enc
}

func encodeFamily(f expfmt.Format, mf *dto.MetricFamily) ([]byte, error) {
	var buf bytes.Buffer
	if err := expfmt.NewEncoder(&buf, f).Encode(mf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// trailer is what the format's encoder writes when it is closed.
func trailer(f expfmt.Format) []byte {
	var buf bytes.Buffer
	if c, ok := expfmt.NewEncoder(&buf, f).(expfmt.Closer); ok {
		_ = c.Close()
	}
	return buf.Bytes()
}

var flatePools = map[int]*sync.Pool{}

func init() {
	for _, level := range []int{flate.DefaultCompression, flate.BestSpeed} {
		flatePools[level] = &sync.Pool{New: func() any {
			w, _ := flate.NewWriter(nil, level)
			return w
		}}
	}
}

// deflateSegment compresses b as a DEFLATE segment that decodes on its own
// and ends on a byte boundary without a final block.
func deflateSegment(level int, b []byte) []byte {
	var buf bytes.Buffer
	w := flatePools[level].Get().(*flate.Writer)
	w.Reset(&buf)
	_, _ = w.Write(b)
	_ = w.Flush()
	flatePools[level].Put(w)
	return buf.Bytes()
}

var (
	// gzipHeader is RFC 1952's member header: no name, no time, OS unknown.
	gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}
	// deflateEnd is an empty final block.
	deflateEnd = func() []byte {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestSpeed)
		_ = w.Close()
		return buf.Bytes()
	}()
)

// acceptsGzip reports whether an Accept-Encoding header allows gzip (by
// name or by *, with a q above 0).
func acceptsGzip(h string) bool {
	star := false
	for part := range strings.SplitSeq(h, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		q := 1.0
		if k, v, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.TrimSpace(k) == "q" {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				q = f
			}
		}
		switch coding {
		case "gzip", "x-gzip":
			return q > 0
		case "*":
			star = q > 0
		}
	}
	return star
}

// ServeHTTP serves the latest published State with the live families.
func (e *Exposition) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := e.cur.Load()
	p.gather(e.metrics)
	if !p.gatherOK {
		e.errors.WithLabelValues("gathering").Inc()
	}
	e.dropped.Add(uint64(p.dropped))
	k := encodingKey{format: expfmt.NegotiateAccept(r.Header, e.formats...), gzip: acceptsGzip(r.Header.Get("Accept-Encoding"))}
	enc := p.encoding(k)
	if enc.errs > 0 {
		e.errors.WithLabelValues("encoding").Add(float64(enc.errs))
	}
	live, err := e.live.Gather()
	if err != nil {
		e.errors.WithLabelValues("gathering").Inc()
	}
	plain, deflated := e.merge(k, enc, live, nameFilter(r))

	h := w.Header()
	h.Set("Content-Type", string(k.format))
	h.Add("Vary", "Accept")
	h.Add("Vary", "Accept-Encoding")
	pieces := plain
	if k.gzip {
		pieces = gzipMember(plain, deflated)
		h.Set("Content-Encoding", "gzip")
	}
	n := 0
	for _, b := range pieces {
		n += len(b)
	}
	h.Set("Content-Length", strconv.Itoa(n))
	for _, b := range pieces {
		if _, err := w.Write(b); err != nil {
			return
		}
	}
}

// nameFilter is the set of family names the request's name[] parameters
// ask for (as promhttp reads them); nil keeps every family.
func nameFilter(r *http.Request) map[string]bool {
	if r.URL == nil {
		return nil
	}
	names := r.URL.Query()["name[]"]
	if len(names) == 0 {
		return nil
	}
	filter := map[string]bool{}
	for _, n := range names {
		filter[n] = true
	}
	return filter
}

// merge interleaves the cached families of enc with the live ones, both
// sorted by name, keeping those filter allows (nil: all), and returns the
// body's pieces and, for gzip, their DEFLATE segments. Consecutive live
// families are encoded into one piece and one fresh segment.
func (e *Exposition) merge(k encodingKey, enc *encoding, live []*dto.MetricFamily, filter map[string]bool) (plain, deflated [][]byte) {
	keep := func(name string) bool { return filter == nil || filter[name] }
	var run bytes.Buffer
	endRun := func() {
		if run.Len() == 0 {
			return
		}
		b := bytes.Clone(run.Bytes())
		plain = append(plain, b)
		if k.gzip {
			deflated = append(deflated, deflateSegment(flate.BestSpeed, b))
		}
		run.Reset()
	}
	i, j := 0, 0
	for i < len(enc.names) || j < len(live) {
		if j == len(live) || (i < len(enc.names) && enc.names[i] <= live[j].GetName()) {
			if keep(enc.names[i]) {
				endRun()
				plain = append(plain, enc.plain[i])
				if k.gzip {
					deflated = append(deflated, enc.deflate[i])
				}
			}
			i++
			continue
		}
		if mf := live[j]; keep(mf.GetName()) {
			if err := expfmt.NewEncoder(&run, k.format).Encode(mf); err != nil {
				e.errors.WithLabelValues("encoding").Inc()
			}
		}
		j++
	}
	run.Write(enc.trailer)
	endRun()
	return plain, deflated
}

// gzipMember is one gzip member of the DEFLATE segments: header, segments,
// an empty final block, and the CRC-32 and size of the plain pieces.
func gzipMember(plain, deflated [][]byte) [][]byte {
	crc, size := uint32(0), 0
	for _, b := range plain {
		crc = crc32.Update(crc, crc32.IEEETable, b)
		size += len(b)
	}
	tail := make([]byte, 8)
	binary.LittleEndian.PutUint32(tail[:4], crc)
	binary.LittleEndian.PutUint32(tail[4:], uint32(size))
	return append(append([][]byte{gzipHeader}, deflated...), deflateEnd, tail)
}
