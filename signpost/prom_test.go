package signpost

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/")

// parsedSample is one sample line of the text format.
type parsedSample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseExposition parses the text format strictly enough to catch what Prometheus would
// reject: comments must be HELP or TYPE lines, every sample's family must have had its
// TYPE, label values must be properly escaped.
func parseExposition(text string) ([]parsedSample, map[string]string, error) {
	var out []parsedSample
	help := map[string]string{}
	types := map[string]string{}
	if text != "" && !strings.HasSuffix(text, "\n") {
		return nil, nil, errors.New("no final line feed")
	}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, h, _ := strings.Cut(rest, " ")
			un, err := unescape(h, false)
			if err != nil {
				return nil, nil, fmt.Errorf("HELP of %s: %w", name, err)
			}
			help[name] = un
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			types[name] = typ
			continue
		}
		if strings.HasPrefix(line, "#") || line == "" {
			return nil, nil, fmt.Errorf("unexpected line %q", line)
		}
		s := parsedSample{labels: map[string]string{}}
		i := strings.IndexAny(line, "{ ")
		if i <= 0 {
			return nil, nil, fmt.Errorf("no name in %q", line)
		}
		s.name, line = line[:i], line[i:]
		if line[0] == '{' {
			line = line[1:]
			for !strings.HasPrefix(line, "}") {
				eq := strings.Index(line, `="`)
				if eq <= 0 {
					return nil, nil, fmt.Errorf("bad label in %q", line)
				}
				name := line[:eq]
				line = line[eq+2:]
				var raw strings.Builder
				j := 0
				for ; j < len(line) && line[j] != '"'; j++ {
					raw.WriteByte(line[j])
					if line[j] == '\\' && j+1 < len(line) {
						j++
						raw.WriteByte(line[j])
					}
				}
				if j == len(line) {
					return nil, nil, errors.New("unterminated label value")
				}
				v, err := unescape(raw.String(), true)
				if err != nil {
					return nil, nil, err
				}
				if _, dup := s.labels[name]; dup {
					return nil, nil, fmt.Errorf("label %s twice", name)
				}
				s.labels[name] = v
				line = strings.TrimPrefix(line[j+1:], ",")
			}
			line = line[1:]
		}
		v, err := strconv.ParseFloat(strings.TrimPrefix(line, " "), 64)
		if err != nil || !strings.HasPrefix(line, " ") {
			return nil, nil, fmt.Errorf("bad value in %q", line)
		}
		s.value = v
		base := s.name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(s.name, suf); ok && types[b] == "histogram" {
				base = b
			}
		}
		if types[base] == "" {
			return nil, nil, fmt.Errorf("sample %s without TYPE", s.name)
		}
		out = append(out, s)
	}
	return out, help, nil
}

func unescape(s string, quoted bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\n' || (quoted && c == '"') {
			return "", fmt.Errorf("unescaped %q", c)
		}
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i++; i == len(s) {
			return "", errors.New("dangling backslash")
		}
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case '"':
			if !quoted {
				return "", errors.New(`\" in HELP`)
			}
			b.WriteByte('"')
		default:
			return "", fmt.Errorf("unknown escape \\%c", s[i])
		}
	}
	return b.String(), nil
}

func exposition(t testing.TB, r *Registry) string {
	t.Helper()
	var b bytes.Buffer
	if _, err := r.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func mustRegistry(t testing.TB, consts ...Label) *Registry {
	t.Helper()
	r, err := NewRegistry(consts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestExpositionGolden: every kind of metric, const labels, escaping and sorting, against
// testdata/exposition.golden (go test -run Golden -update rewrites it).
func TestExpositionGolden(t *testing.T) {
	r := mustRegistry(t, Label{"appliance", "mail"})
	c := NewCounter("b_total", "A counter.\nSecond line with a \\ backslash.")
	c.Add(3)
	c.Inc()
	c.Add(-5) // ignored
	cv := NewCounterVec("a_requests_total", "By method and code.", "method", "code")
	cv.WithLabelValues("get", "200").Add(2)
	cv.WithLabelValues("put", "500").Inc()
	cv.WithLabelValues(`we"ird\`, "new\nline").Inc()
	cv.WithLabelValues("too", "many", "values").Inc() // dropped
	g := NewGauge("c_in_flight", "A gauge.")
	g.Set(2.5)
	g.Dec()
	gv := NewGaugeVec("d_open", "Open by proto.", "proto")
	gv.WithLabelValues("imap").Inc()
	gv.WithLabelValues("imap").Inc()
	gv.WithLabelValues("smtp").Set(-1)
	h := NewHistogramVec("e_seconds", "Latency.", []float64{0.01, 0.1, 1}, "method")
	for _, v := range []float64{0.001, 0.01, 0.05, 0.5, 2, 30} {
		h.WithLabelValues("get").Observe(v)
	}
	h1 := NewHistogram("f_bytes", "Sizes.", []float64{1024, 1e6})
	h1.Observe(2048)
	empty := NewCounterVec("g_unused_total", "No series yet: not written.", "x")
	fn := NewCollectFunc("h_queries_total", "Read at scrape time.", CounterType, []string{"type"},
		func(emit func(float64, ...string)) {
			emit(7, "MX")
			emit(1, "A")
			emit(9, "A", "extra") // wrong count: dropped
		})
	gf := NewGaugeFunc("i_special", "Infinity.", func() float64 { return math.Inf(1) })
	if err := r.Register(cv, c, g, gv, h, h1, empty, fn, gf); err != nil {
		t.Fatal(err)
	}
	got := exposition(t, r)
	golden := filepath.Join("testdata", "exposition.golden")
	if *updateGolden {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("exposition differs from %s:\n%s", golden, got)
	}
	if _, _, err := parseExposition(got); err != nil {
		t.Fatalf("own output does not parse: %v", err)
	}
}

// TestHistogramBuckets: an observation lands in the first bucket whose bound is >= it;
// the written buckets are cumulative, +Inf equals _count, _sum is the sum.
func TestHistogramBuckets(t *testing.T) {
	bounds := []float64{1, 2, 5}
	for _, tc := range []struct {
		name    string
		observe []float64
		want    []float64 // cumulative: le=1, 2, 5, +Inf
		sum     float64
	}{
		{"none", nil, []float64{0, 0, 0, 0}, 0},
		{"on a bound", []float64{1, 2, 5}, []float64{1, 2, 3, 3}, 8},
		{"between bounds", []float64{0.5, 1.5, 4.9}, []float64{1, 2, 3, 3}, 6.9},
		{"above the last", []float64{5.0001, 100}, []float64{0, 0, 0, 2}, 105.0001},
		{"negative", []float64{-3}, []float64{1, 1, 1, 1}, -3},
		{"NaN ignored, infinities counted", []float64{math.NaN(), math.Inf(1), math.Inf(-1)}, []float64{1, 1, 1, 2}, math.NaN()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRegistry(t)
			h := NewHistogram("x_seconds", "x", bounds)
			if err := r.Register(h); err != nil {
				t.Fatal(err)
			}
			for _, v := range tc.observe {
				h.Observe(v)
			}
			samples, _, err := parseExposition(exposition(t, r))
			if err != nil {
				t.Fatal(err)
			}
			var buckets []float64
			var les []string
			var sum, count float64
			for _, s := range samples {
				switch s.name {
				case "x_seconds_bucket":
					buckets = append(buckets, s.value)
					les = append(les, s.labels["le"])
				case "x_seconds_sum":
					sum = s.value
				case "x_seconds_count":
					count = s.value
				}
			}
			if strings.Join(les, ",") != "1,2,5,+Inf" {
				t.Fatalf("le %v", les)
			}
			if fmt.Sprint(buckets) != fmt.Sprint(tc.want) {
				t.Fatalf("buckets %v, want %v", buckets, tc.want)
			}
			if count != buckets[len(buckets)-1] {
				t.Fatalf("count %v != +Inf bucket %v", count, buckets[len(buckets)-1])
			}
			if !(math.IsNaN(tc.sum) && math.IsNaN(sum)) && math.Abs(sum-tc.sum) > 1e-9 {
				t.Fatalf("sum %v, want %v", sum, tc.sum)
			}
		})
	}
}

func TestNewHistogramCleansBuckets(t *testing.T) {
	h := NewHistogram("y", "y", []float64{0.5, 0.1, 1, 1, math.NaN(), math.Inf(1), 2})
	if got := fmt.Sprint(h.fam.buckets); got != "[0.5 1 2]" {
		t.Fatalf("buckets %s", got)
	}
}

// TestLabelEscaping: backslash, quote and line feed are escaped in label values, backslash
// and line feed in HELP; invalid UTF-8 becomes U+FFFD.
func TestLabelEscaping(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{`a"b`, `a\"b`},
		{`a\b`, `a\\b`},
		{"a\nb", `a\nb`},
		{`\"` + "\n", `\\\"\n`},
		{"tab\tstays", "tab\tstays"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := EscapeLabelValue(tc.in); got != tc.want {
				t.Fatalf("EscapeLabelValue(%q) = %q, want %q", tc.in, got, tc.want)
			}
			r := mustRegistry(t)
			v := NewCounterVec("esc_total", "help with \" and \\ and\nnewline", "v")
			v.WithLabelValues(tc.in).Inc()
			if err := r.Register(v); err != nil {
				t.Fatal(err)
			}
			text := exposition(t, r)
			if !strings.Contains(text, `esc_total{v="`+tc.want+`"} 1`+"\n") {
				t.Fatalf("output:\n%s", text)
			}
			if !strings.Contains(text, `# HELP esc_total help with " and \\ and\nnewline`+"\n") {
				t.Fatalf("HELP not escaped:\n%s", text)
			}
		})
	}
}

func TestRegisterErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Collector
		dup  bool
	}{
		{"bad name", NewCounter("1abc", "x"), false},
		{"empty name", NewGauge("", "x"), false},
		{"dash in name", NewCounter("a-b", "x"), false},
		{"bad label", NewCounterVec("ok_total", "x", "bad-label"), false},
		{"reserved label", NewCounterVec("ok_total", "x", "__name"), false},
		{"repeated label", NewCounterVec("ok_total", "x", "a", "a"), false},
		{"constant label again", NewCounterVec("ok_total", "x", "appliance"), false},
		{"le on a histogram", NewHistogramVec("ok_seconds", "x", []float64{1}, "le"), false},
		{"unknown type", NewCollectFunc("ok", "x", "summary", nil, func(func(float64, ...string)) {}), false},
		{"too many labels", NewCounterVec("ok_total", "x", strings.Split("a b c d e f g h i j k l m n o p", " ")...), false},
		{"duplicate", NewGauge("taken", "x"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRegistry(t, Label{"appliance", "x"})
			if err := r.Register(NewCounter("taken", "x")); err != nil {
				t.Fatal(err)
			}
			err := r.Register(tc.c)
			if err == nil {
				t.Fatal("registered")
			}
			if errors.Is(err, ErrDuplicateMetric) != tc.dup {
				t.Fatalf("err %v, duplicate %v", err, tc.dup)
			}
		})
	}
	for _, consts := range [][]Label{{{"bad name", "x"}}, {{"a", "1"}, {"a", "2"}}, {{"__x", "1"}}} {
		if _, err := NewRegistry(consts...); err == nil {
			t.Errorf("NewRegistry(%v) accepted", consts)
		}
	}
}

// TestSeriesLimit: label combinations beyond MaxSeries are dropped, not kept.
func TestSeriesLimit(t *testing.T) {
	r := mustRegistry(t)
	v := NewCounterVec("many_total", "x", "id")
	if err := r.Register(v); err != nil {
		t.Fatal(err)
	}
	for i := range MaxSeries + 50 {
		v.WithLabelValues(strconv.Itoa(i)).Inc()
	}
	samples, _, err := parseExposition(exposition(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != MaxSeries {
		t.Fatalf("%d series, want %d", len(samples), MaxSeries)
	}
	c := v.WithLabelValues(strconv.Itoa(MaxSeries + 1))
	if c.Inc(); c.Value() != 1 {
		t.Fatal("a dropped series does not count for its holder")
	}
}

// TestConcurrentUpdates: counts from many goroutines add up exactly (run with -race).
func TestConcurrentUpdates(t *testing.T) {
	r := mustRegistry(t)
	cv := NewCounterVec("conc_total", "x", "worker")
	c := NewCounter("conc_all_total", "x")
	g := NewGauge("conc_gauge", "x")
	h := NewHistogram("conc_seconds", "x", []float64{0.5})
	if err := r.Register(cv, c, g, h); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 1000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				cv.WithLabelValues(strconv.Itoa(w % 2)).Inc()
				c.Add(0.5)
				g.Inc()
				g.Dec()
				h.Observe(float64(i % 2))
				if i%100 == 0 {
					exposition(t, r) // scrapes race with updates
				}
			}
		})
	}
	wg.Wait()
	text := exposition(t, r)
	for _, want := range []string{
		`conc_total{worker="0"} 4000`,
		`conc_total{worker="1"} 4000`,
		`conc_all_total 4000`,
		`conc_gauge 0`,
		`conc_seconds_bucket{le="0.5"} 4000`,
		`conc_seconds_bucket{le="+Inf"} 8000`,
		`conc_seconds_sum 4000`,
		`conc_seconds_count 8000`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
}

// TestRegistryHandler: a real HTTP scrape gets the text format's content type and the
// process figures.
func TestRegistryHandler(t *testing.T) {
	r := mustRegistry(t, Label{"appliance", "store"})
	if err := RegisterProcessMetrics(r); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("content type %q", ct)
	}
	samples, _, err := parseExposition(string(b))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, s := range samples {
		if s.labels["appliance"] != "store" {
			t.Errorf("%s lacks the appliance label", s.name)
		}
		got[s.name] = s.value
	}
	if got["go_goroutines"] < 1 || got["go_memstats_heap_alloc_bytes"] <= 0 || got["go_memstats_sys_bytes"] <= 0 {
		t.Errorf("Go figures: %v", got)
	}
	if _, err := os.Stat("/proc/self/statm"); err == nil {
		if rss := got["process_resident_memory_bytes"]; rss < 1<<20 || rss > 1<<34 {
			t.Errorf("resident memory %v", rss)
		}
		if got["process_open_fds"] < 3 {
			t.Errorf("open fds %v", got["process_open_fds"])
		}
	}
	if st := got["process_start_time_seconds"]; st < 1.6e9 {
		t.Errorf("start time %v", st)
	}
}

// FuzzLabelEscaping: any label value and help text round-trip through the output and a
// strict parser.
func FuzzLabelEscaping(f *testing.F) {
	for _, s := range []string{"", "plain", `"`, `\`, "\n", `\n`, `a\"b`, "\xff\xfe", "}{,= "} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, value, help string) {
		r := mustRegistry(t, Label{"c", value})
		v := NewCounterVec("fz_total", help, "l")
		v.WithLabelValues(value).Inc()
		if err := r.Register(v); err != nil {
			t.Fatal(err)
		}
		text := exposition(t, r)
		samples, helps, err := parseExposition(text)
		if err != nil {
			t.Fatalf("%v in:\n%s", err, text)
		}
		want := strings.ToValidUTF8(value, "\uFFFD")
		if len(samples) != 1 || samples[0].labels["l"] != want || samples[0].labels["c"] != want || samples[0].value != 1 {
			t.Fatalf("got %+v, want label %q", samples, want)
		}
		if utf8.ValidString(help) && helps["fz_total"] != help {
			t.Fatalf("help %q, want %q", helps["fz_total"], help)
		}
	})
}

// BenchmarkCounterVecInc is the cost of counting one event by label.
func BenchmarkCounterVecInc(b *testing.B) {
	v := NewCounterVec("b_total", "x", "method", "code")
	for b.Loop() {
		v.WithLabelValues("get", "200").Inc()
	}
}

// BenchmarkScrape is the cost of writing a typical appliance's metrics.
func BenchmarkScrape(b *testing.B) {
	m := NewMetrics("bench")
	for _, meth := range []string{"get", "put", "propfind", "report"} {
		m.requests.WithLabelValues(meth, "200").Inc()
		m.latency.WithLabelValues(meth).Observe(0.01)
	}
	for b.Loop() {
		m.reg.WriteTo(io.Discard)
	}
}
