package signpost

// This file is Hearth's own small Prometheus registry, written by hand on purpose instead
// of using github.com/prometheus/client_golang: client_golang (with protobuf, procfs and
// client_model) costs 6.7 MB of binary and 3.6 MiB of RSS per appliance, and the
// appliances' memory budgets are 20 MiB. It writes the text exposition format 0.0.4 only:
// counters, gauges, histograms with fixed buckets, values read at scrape time, and cheap
// process and Go runtime figures.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// MaxSeries is how many label-value combinations one metric keeps; the values of further
// combinations are dropped, so that a client cannot grow memory without bound.
const MaxSeries = 10000

// maxLabels bounds the labels of one metric.
const maxLabels = 16

// ErrDuplicateMetric is returned by Register for a name the registry already has.
var ErrDuplicateMetric = errors.New("metric already registered")

// MetricType is the TYPE of a metric in the exposition format.
type MetricType string

// The metric types a Registry writes.
const (
	CounterType   MetricType = "counter"
	GaugeType     MetricType = "gauge"
	HistogramType MetricType = "histogram"
	UntypedType   MetricType = "untyped"
)

// Collector is a metric that a Registry can hold: *Counter, *CounterVec, *Gauge,
// *GaugeVec, *Histogram, *HistogramVec, or one from NewGaugeFunc, NewCounterFunc or
// NewCollectFunc.
type Collector interface {
	metricFamily() *family
}

// family is one metric name with its series.
type family struct {
	name, help string
	typ        MetricType
	labels     []string  // variable label names
	buckets    []float64 // upper bounds, ascending, without +Inf (histograms)

	mu     sync.RWMutex
	series map[string]*series // by label values joined with \xff

	// collect, when set, produces the series at scrape time instead.
	collect func(emit func(value float64, labelValues ...string))
}

// series is one label-value combination of a family.
type series struct {
	fam  *family
	lvs  []string
	bits atomic.Uint64 // float64 bits of a counter's or gauge's value

	mu     sync.Mutex // histograms
	counts []uint64   // per bucket, the last one +Inf (not cumulative)
	sum    float64
}

func newFamily(name, help string, typ MetricType, labels []string, buckets []float64) *family {
	return &family{name: name, help: help, typ: typ, labels: slices.Clone(labels),
		buckets: buckets, series: map[string]*series{}}
}

func (f *family) newSeries(lvs []string) *series {
	s := &series{fam: f, lvs: lvs}
	if f.typ == HistogramType {
		s.counts = make([]uint64, len(f.buckets)+1)
	}
	return s
}

// get returns the series of the label values; a wrong number of values or one
// combination too many gets a series that is not kept (its values are dropped).
func (f *family) get(lvs []string) *series {
	if len(lvs) != len(f.labels) {
		return f.newSeries(nil)
	}
	key := strings.Join(lvs, "\xff")
	f.mu.RLock()
	s := f.series[key]
	f.mu.RUnlock()
	if s != nil {
		return s
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s = f.series[key]; s != nil {
		return s
	}
	clean := make([]string, len(lvs))
	for i, v := range lvs {
		clean[i] = strings.ToValidUTF8(v, "\uFFFD")
	}
	s = f.newSeries(clean)
	if len(f.series) < MaxSeries {
		f.series[key] = s
	}
	return s
}

func addFloat(u *atomic.Uint64, d float64) {
	for {
		old := u.Load()
		if u.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Counter is a value that only goes up.
type Counter series

// NewCounter returns a counter without labels; register it with Registry.Register.
func NewCounter(name, help string) *Counter {
	f := newFamily(name, help, CounterType, nil, nil)
	return (*Counter)(f.get(nil))
}

func (c *Counter) metricFamily() *family { return c.fam }

// Inc adds one.
func (c *Counter) Inc() { c.Add(1) }

// Add adds d; a negative d is ignored (counters never go down).
func (c *Counter) Add(d float64) {
	if d > 0 {
		addFloat(&c.bits, d)
	}
}

// Value returns the counter's value.
func (c *Counter) Value() float64 { return math.Float64frombits(c.bits.Load()) }

// CounterVec is a counter by label values.
type CounterVec struct{ f *family }

// NewCounterVec returns a counter with the named labels.
func NewCounterVec(name, help string, labels ...string) *CounterVec {
	return &CounterVec{newFamily(name, help, CounterType, labels, nil)}
}

func (v *CounterVec) metricFamily() *family { return v.f }

// WithLabelValues returns the counter of the label values, given in the order of the
// labels. A wrong number of values, or a combination beyond MaxSeries, gets a counter
// whose counts are dropped.
func (v *CounterVec) WithLabelValues(values ...string) *Counter {
	return (*Counter)(v.f.get(values))
}

// Gauge is a value that goes up and down.
type Gauge series

// NewGauge returns a gauge without labels.
func NewGauge(name, help string) *Gauge {
	f := newFamily(name, help, GaugeType, nil, nil)
	return (*Gauge)(f.get(nil))
}

func (g *Gauge) metricFamily() *family { return g.fam }

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds d (which may be negative).
func (g *Gauge) Add(d float64) { addFloat(&g.bits, d) }

// Inc adds one.
func (g *Gauge) Inc() { g.Add(1) }

// Dec subtracts one.
func (g *Gauge) Dec() { g.Add(-1) }

// Value returns the gauge's value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// GaugeVec is a gauge by label values.
type GaugeVec struct{ f *family }

// NewGaugeVec returns a gauge with the named labels.
func NewGaugeVec(name, help string, labels ...string) *GaugeVec {
	return &GaugeVec{newFamily(name, help, GaugeType, labels, nil)}
}

func (v *GaugeVec) metricFamily() *family { return v.f }

// WithLabelValues returns the gauge of the label values (see CounterVec.WithLabelValues).
func (v *GaugeVec) WithLabelValues(values ...string) *Gauge {
	return (*Gauge)(v.f.get(values))
}

// Histogram counts observations into buckets with fixed upper bounds.
type Histogram series

// NewHistogram returns a histogram without labels. buckets are the upper bounds in
// ascending order; +Inf is implied. Bounds that are not ascending, NaN or infinite are
// left out.
func NewHistogram(name, help string, buckets []float64) *Histogram {
	f := newFamily(name, help, HistogramType, nil, cleanBuckets(buckets))
	return (*Histogram)(f.get(nil))
}

func cleanBuckets(bs []float64) []float64 {
	var out []float64
	for _, b := range bs {
		if math.IsNaN(b) || math.IsInf(b, 0) || (len(out) > 0 && b <= out[len(out)-1]) {
			continue
		}
		out = append(out, b)
	}
	return out
}

func (h *Histogram) metricFamily() *family { return h.fam }

// Observe counts v into the first bucket whose upper bound is at least v. NaN is ignored.
func (h *Histogram) Observe(v float64) {
	if math.IsNaN(v) {
		return
	}
	i := sort.SearchFloat64s(h.fam.buckets, v) // first bound >= v; len(buckets) is +Inf
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.mu.Unlock()
}

// snapshot returns the cumulative bucket counts (the last is +Inf, the count) and the sum.
func (h *Histogram) snapshot() ([]uint64, float64) {
	h.mu.Lock()
	cum := slices.Clone(h.counts)
	sum := h.sum
	h.mu.Unlock()
	for i := 1; i < len(cum); i++ {
		cum[i] += cum[i-1]
	}
	return cum, sum
}

// HistogramVec is a histogram by label values.
type HistogramVec struct{ f *family }

// NewHistogramVec returns a histogram with the named labels (see NewHistogram).
func NewHistogramVec(name, help string, buckets []float64, labels ...string) *HistogramVec {
	return &HistogramVec{newFamily(name, help, HistogramType, labels, cleanBuckets(buckets))}
}

func (v *HistogramVec) metricFamily() *family { return v.f }

// WithLabelValues returns the histogram of the label values (see CounterVec.WithLabelValues).
func (v *HistogramVec) WithLabelValues(values ...string) *Histogram {
	return (*Histogram)(v.f.get(values))
}

type funcCollector struct{ f *family }

func (c funcCollector) metricFamily() *family { return c.f }

// NewCollectFunc returns a metric whose series are read at each scrape: collect calls
// emit once per series with its value and label values (in the order of labels). typ
// must be CounterType, GaugeType or UntypedType.
func NewCollectFunc(name, help string, typ MetricType, labels []string, collect func(emit func(value float64, labelValues ...string))) Collector {
	f := newFamily(name, help, typ, labels, nil)
	f.collect = collect
	return funcCollector{f}
}

// NewGaugeFunc returns a gauge without labels whose value is read at each scrape.
func NewGaugeFunc(name, help string, value func() float64) Collector {
	return NewCollectFunc(name, help, GaugeType, nil, func(emit func(float64, ...string)) { emit(value()) })
}

// NewCounterFunc returns a counter without labels whose value is read at each scrape.
func NewCounterFunc(name, help string, value func() float64) Collector {
	return NewCollectFunc(name, help, CounterType, nil, func(emit func(float64, ...string)) { emit(value()) })
}

// Label is a label name and value.
type Label struct{ Name, Value string }

// Registry holds metrics and writes them in Prometheus' text exposition format 0.0.4,
// sorted by name, every series with the registry's constant labels.
type Registry struct {
	mu     sync.RWMutex
	consts []Label
	fams   map[string]*family
	scrape chan struct{} // bounds concurrent scrapes of Handler
}

// NewRegistry returns an empty registry whose series all carry the constant labels.
// Invalid constant labels are an error.
func NewRegistry(constLabels ...Label) (*Registry, error) {
	seen := map[string]bool{}
	for _, l := range constLabels {
		if !validLabelName(l.Name) || seen[l.Name] {
			return nil, fmt.Errorf("signpost: metrics: bad or repeated constant label %q", l.Name)
		}
		seen[l.Name] = true
	}
	if len(constLabels) > maxLabels {
		return nil, fmt.Errorf("signpost: metrics: more than %d constant labels", maxLabels)
	}
	consts := slices.Clone(constLabels)
	for i := range consts {
		consts[i].Value = strings.ToValidUTF8(consts[i].Value, "\uFFFD")
	}
	return &Registry{consts: consts, fams: map[string]*family{}, scrape: make(chan struct{}, 4)}, nil
}

// Register adds metrics to the registry. A bad metric or label name, a label that is also
// a constant label, or a name already registered is an error (ErrDuplicateMetric for the
// last); the metrics before the bad one stay registered.
func (r *Registry) Register(cs ...Collector) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		f := c.metricFamily()
		if err := r.check(f); err != nil {
			return fmt.Errorf("signpost: register metric %q: %w", f.name, err)
		}
		r.fams[f.name] = f
	}
	return nil
}

func (r *Registry) check(f *family) error {
	if !validMetricName(f.name) {
		return errors.New("bad metric name")
	}
	if _, dup := r.fams[f.name]; dup {
		return ErrDuplicateMetric
	}
	switch f.typ {
	case CounterType, GaugeType, HistogramType, UntypedType:
	default:
		return fmt.Errorf("unknown type %q", f.typ)
	}
	if len(f.labels)+len(r.consts) > maxLabels {
		return fmt.Errorf("more than %d labels", maxLabels)
	}
	seen := map[string]bool{}
	for _, l := range r.consts {
		seen[l.Name] = true
	}
	for _, l := range f.labels {
		if !validLabelName(l) || seen[l] || (f.typ == HistogramType && l == "le") {
			return fmt.Errorf("bad or repeated label %q", l)
		}
		seen[l] = true
	}
	if f.typ == HistogramType && seen["le"] {
		return errors.New("a histogram cannot have the label le")
	}
	return nil
}

func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func validLabelName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// sample is one line's worth of a series before it is written.
type sample struct {
	labels string // rendered, without braces
	value  float64
	s      *series
}

// WriteTo writes every metric in the text exposition format 0.0.4.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	var buf bytes.Buffer
	r.write(&buf)
	return buf.WriteTo(w)
}

func (r *Registry) write(b *bytes.Buffer) {
	r.mu.RLock()
	fams := make([]*family, 0, len(r.fams))
	for _, f := range r.fams {
		fams = append(fams, f)
	}
	r.mu.RUnlock()
	slices.SortFunc(fams, func(a, b *family) int { return strings.Compare(a.name, b.name) })
	for _, f := range fams {
		samples := r.samples(f)
		if len(samples) == 0 {
			continue
		}
		b.WriteString("# HELP ")
		b.WriteString(f.name)
		b.WriteByte(' ')
		writeEscaped(b, f.help, false)
		b.WriteString("\n# TYPE ")
		b.WriteString(f.name)
		b.WriteByte(' ')
		b.WriteString(string(f.typ))
		b.WriteByte('\n')
		for _, s := range samples {
			if f.typ != HistogramType {
				writeSample(b, f.name, "", s.labels, "", s.value)
				continue
			}
			cum, sum := (*Histogram)(s.s).snapshot()
			for i, n := range cum {
				le := "+Inf"
				if i < len(f.buckets) {
					le = formatFloat(f.buckets[i])
				}
				writeSample(b, f.name, "_bucket", s.labels, le, float64(n))
			}
			writeSample(b, f.name, "_sum", s.labels, "", sum)
			writeSample(b, f.name, "_count", s.labels, "", float64(cum[len(cum)-1]))
		}
	}
}

// samples returns the series of f with their rendered labels, sorted by them.
func (r *Registry) samples(f *family) []sample {
	var out []sample
	if f.collect != nil {
		f.collect(func(v float64, lvs ...string) {
			if len(lvs) != len(f.labels) || len(out) >= MaxSeries {
				return
			}
			clean := make([]string, len(lvs))
			for i, v := range lvs {
				clean[i] = strings.ToValidUTF8(v, "\uFFFD")
			}
			out = append(out, sample{labels: r.renderLabels(f.labels, clean), value: v})
		})
	} else {
		f.mu.RLock()
		for _, s := range f.series {
			out = append(out, sample{labels: r.renderLabels(f.labels, s.lvs), value: math.Float64frombits(s.bits.Load()), s: s})
		}
		f.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b sample) int { return strings.Compare(a.labels, b.labels) })
	return out
}

// renderLabels writes name="value" pairs of the constant and the given labels, sorted by
// name, without the braces.
func (r *Registry) renderLabels(names, values []string) string {
	ls := make([]Label, 0, len(r.consts)+len(names))
	ls = append(ls, r.consts...)
	for i, n := range names {
		ls = append(ls, Label{n, values[i]})
	}
	slices.SortFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	var b bytes.Buffer
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.Name)
		b.WriteString(`="`)
		writeEscaped(&b, l.Value, true)
		b.WriteByte('"')
	}
	return b.String()
}

func writeSample(b *bytes.Buffer, name, suffix, labels, le string, v float64) {
	b.WriteString(name)
	b.WriteString(suffix)
	if labels != "" || le != "" {
		b.WriteByte('{')
		b.WriteString(labels)
		if le != "" {
			if labels != "" {
				b.WriteByte(',')
			}
			b.WriteString(`le="`)
			b.WriteString(le)
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(formatFloat(v))
	b.WriteByte('\n')
}

// writeEscaped escapes a backslash and a line feed, and in label values a double quote,
// as the text format requires.
func writeEscaped(b *bytes.Buffer, s string, quote bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '"' && quote:
			b.WriteString(`\"`)
		default:
			b.WriteByte(c)
		}
	}
}

// EscapeLabelValue returns v escaped for a label value of the text format (without the
// surrounding quotes); invalid UTF-8 becomes U+FFFD.
func EscapeLabelValue(v string) string {
	var b bytes.Buffer
	writeEscaped(&b, strings.ToValidUTF8(v, "\uFFFD"), true)
	return b.String()
}

// formatFloat writes a value as Prometheus does: +Inf, -Inf, NaN, or the shortest
// representation.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Handler serves the registry's metrics; at most 4 scrapes run at once, further ones get
// 503.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case r.scrape <- struct{}{}:
			defer func() { <-r.scrape }()
		default:
			http.Error(w, "too many scrapes at once", http.StatusServiceUnavailable)
			return
		}
		var buf bytes.Buffer
		r.write(&buf)
		w.Header().Set("Content-Type", ContentType)
		w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
		if req.Method != http.MethodHead {
			buf.WriteTo(w)
		}
	})
}
