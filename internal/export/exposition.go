package export

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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
// State (Publish). Nor does it wait for a State to be encoded, once a
// scraper has asked for its format: Publish has the new State gathered and
// encoded, in the background, in every format asked for in the last
// wantedFor, and scrapes are served the previous State until that is done
// (States are served in the order published, never an older after a
// newer). A format nobody asked for lately is encoded by the first scrape
// that asks, while concurrent scrapes of it wait for that one encoding.
//
// Scrapes of the whole exposition (no name[] filter) that arrive while
// another scrape of the same State, format and encoding is building its
// response wait for it and are served the same bytes: the live families are
// gathered and the body spliced once for all of them, so concurrent
// scrapers do not queue behind each other's copies of that work. A response
// is never kept past its build: the next scrape to arrive builds afresh.
type Exposition struct {
	metrics *Metrics
	live    prometheus.Gatherer
	cur     atomic.Pointer[published] // what scrapes are served
	latest  atomic.Pointer[published] // the last published
	seq     uint64                    // of the last published; under swap
	swap    sync.Mutex
	// preparing is set while a goroutine encodes published States before
	// they are served.
	preparing atomic.Bool
	formats   []expfmt.Format
	// dropped sums, over scrapes, the problem series the cap left out of
	// the state each scrape served.
	dropped atomic.Uint64
	errors  *prometheus.CounterVec
	// joined counts the scrapes served another scrape's build.
	joined atomic.Uint64

	askedMu sync.Mutex
	asked   map[encodingKey]time.Time // when a scrape last asked for each
}

// wantedFor is how long after a scrape asked for a format and encoding a
// newly published State is encoded in it before it is served: longer than
// any scrape interval in use.
const wantedFor = 10 * time.Minute

// NewExposition returns an Exposition serving an empty State until the
// first Publish, with at most maxProblemSeries mountwatchd_problem series.
// It registers its own per-scrape metrics in live
// (mountwatchd_problem_series_dropped_total,
// promhttp_metric_handler_errors_total), and gathers live on each scrape.
func NewExposition(maxProblemSeries int, live *prometheus.Registry) *Exposition {
	e := &Exposition{
		metrics: newMetrics(maxProblemSeries),
		live:    live,
		formats: expfmt.DefaultOpenMetricsAcceptedFormats(),
		asked:   map[encodingKey]time.Time{},
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

// Publish makes st the State later scrapes serve. It only stores st and
// returns: if scrapers asked for some formats lately, a goroutine (one at a
// time, which moves on to the newest State when it is done) gathers and
// encodes st in those and then serves it; else st is served at once and
// encoded by the first scrape that asks.
func (e *Exposition) Publish(st *State) {
	if st == nil {
		st = &State{}
	}
	p := &published{st: st, encodings: map[encodingKey]*encoding{}}
	e.swap.Lock()
	e.seq++
	p.seq = e.seq
	e.latest.Store(p)
	e.swap.Unlock()
	if len(e.wanted(time.Now())) == 0 {
		e.serve(p)
		return
	}
	if e.preparing.CompareAndSwap(false, true) {
		go e.prepare()
	}
}

// prepare encodes the latest State in the wanted formats and serves it,
// until the latest is served.
func (e *Exposition) prepare() {
	for {
		p := e.latest.Load()
		p.gather(e.metrics)
		for _, k := range e.wanted(time.Now()) {
			p.encoding(k)
		}
		e.serve(p)
		if e.latest.Load() == p {
			e.preparing.Store(false)
			// A Publish between the check and the Store saw preparing
			// set and left its State to this goroutine.
			if e.latest.Load() == p || !e.preparing.CompareAndSwap(false, true) {
				return
			}
		}
	}
}

// serve makes p the State scrapes are served, unless a newer one is.
func (e *Exposition) serve(p *published) {
	e.swap.Lock()
	defer e.swap.Unlock()
	if cur := e.cur.Load(); cur == nil || cur.seq < p.seq {
		e.cur.Store(p)
	}
}

// ask records that a scrape asked for k.
func (e *Exposition) ask(k encodingKey, now time.Time) {
	e.askedMu.Lock()
	e.asked[k] = now
	e.askedMu.Unlock()
}

// wanted is the formats and encodings asked for within wantedFor of now.
func (e *Exposition) wanted(now time.Time) []encodingKey {
	e.askedMu.Lock()
	defer e.askedMu.Unlock()
	var keys []encodingKey
	for k, at := range e.asked {
		if now.Sub(at) < wantedFor {
			keys = append(keys, k)
		} else {
			delete(e.asked, k)
		}
	}
	return keys
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
	st  *State
	seq uint64 // its place in the order of Publish calls

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
// bytes, their CRC-32 and, for gzip, an independent DEFLATE segment of them
// (no reference to earlier data, ending in a sync flush on a byte
// boundary), so segments made at different times concatenate into one
// valid stream.
type encoding struct {
	once    sync.Once
	names   []string
	pieces  []piece
	trailer []byte // OpenMetrics' "# EOF"
	errs    int

	mu     sync.Mutex
	flight *flight // the response being built, nil if none
}

// piece is a run of the plain body and, for gzip, its CRC-32, the factor
// that shifts a CRC past it (crc32Combine's x^(8·len) mod p, so a cached
// piece combines in one multiplication) and its DEFLATE segment.
type piece struct {
	plain   []byte
	crc     uint32
	shift   uint32
	deflate []byte
}

// flight is one response being built, which the scrapes arriving meanwhile
// wait for and share.
type flight struct {
	done chan struct{}
	body []byte
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
			enc.pieces = append(enc.pieces, newPiece(k.gzip, b))
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

// ServeHTTP serves the latest published State with the live families.
func (e *Exposition) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := e.cur.Load()
	p.gather(e.metrics)
	if !p.gatherOK {
		e.errors.WithLabelValues("gathering").Inc()
	}
	e.dropped.Add(uint64(p.dropped))
	k := encodingKey{format: expfmt.NegotiateAccept(r.Header, e.formats...), gzip: acceptsGzip(r.Header.Get("Accept-Encoding"))}
	e.ask(k, time.Now())
	enc := p.encoding(k)
	if enc.errs > 0 {
		e.errors.WithLabelValues("encoding").Add(float64(enc.errs))
	}
	var body []byte
	if filter := nameFilter(r); filter != nil {
		body = e.build(k, enc, filter)
	} else if body = e.shared(r.Context(), k, enc); body == nil {
		return // the client went away while waiting
	}

	h := w.Header()
	h.Set("Content-Type", string(k.format))
	h.Add("Vary", "Accept")
	h.Add("Vary", "Accept-Encoding")
	if k.gzip {
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// shared returns the whole exposition of enc: the body another scrape is
// building now, or else one this scrape builds while later arrivals wait
// for it. It returns nil if ctx ends while waiting.
func (e *Exposition) shared(ctx context.Context, k encodingKey, enc *encoding) []byte {
	enc.mu.Lock()
	if f := enc.flight; f != nil {
		enc.mu.Unlock()
		e.joined.Add(1)
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil
		}
		if f.body != nil {
			return f.body
		}
		return e.build(k, enc, nil) // the build panicked
	}
	f := &flight{done: make(chan struct{})}
	enc.flight = f
	enc.mu.Unlock()
	defer func() {
		enc.mu.Lock()
		enc.flight = nil
		enc.mu.Unlock()
		close(f.done)
	}()
	f.body = e.build(k, enc, nil)
	return f.body
}

// build gathers the live families and returns the response body: enc's
// cached families merged with them, those filter allows (nil: all), as one
// slice; for gzip, one gzip member whose CRC-32 is combined from the
// pieces' CRCs.
func (e *Exposition) build(k encodingKey, enc *encoding, filter map[string]bool) []byte {
	live, err := e.live.Gather()
	if err != nil {
		e.errors.WithLabelValues("gathering").Inc()
	}
	pieces := e.merge(k, enc, live, filter)
	if !k.gzip {
		n := 0
		for _, pc := range pieces {
			n += len(pc.plain)
		}
		body := make([]byte, 0, n)
		for _, pc := range pieces {
			body = append(body, pc.plain...)
		}
		return body
	}
	return gzipMember(pieces)
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
// body's pieces. Consecutive live families are encoded into one piece (and
// one fresh, stored segment).
func (e *Exposition) merge(k encodingKey, enc *encoding, live []*dto.MetricFamily, filter map[string]bool) []piece {
	keep := func(name string) bool { return filter == nil || filter[name] }
	pieces := make([]piece, 0, len(enc.pieces)+len(live)+1)
	var run bytes.Buffer
	endRun := func() {
		if run.Len() == 0 {
			return
		}
		pieces = append(pieces, livePiece(k.gzip, bytes.Clone(run.Bytes())))
		run.Reset()
	}
	i, j := 0, 0
	for i < len(enc.names) || j < len(live) {
		if j == len(live) || (i < len(enc.names) && enc.names[i] <= live[j].GetName()) {
			if keep(enc.names[i]) {
				endRun()
				pieces = append(pieces, enc.pieces[i])
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
	return pieces
}
