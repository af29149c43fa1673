package signpost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hearth-home/hearth/store"
)

// httpMethods are the methods the metrics name (others count as "unknown", so a client
// cannot grow the label set): HTTP's own and WebDAV's.
var httpMethods = map[string]string{
	"GET": "get", "HEAD": "head", "POST": "post", "PUT": "put", "DELETE": "delete",
	"CONNECT": "connect", "OPTIONS": "options", "TRACE": "trace", "PATCH": "patch",
	"PROPFIND": "propfind", "PROPPATCH": "proppatch", "REPORT": "report", "MKCOL": "mkcol",
	"MKCALENDAR": "mkcalendar", "COPY": "copy", "MOVE": "move", "LOCK": "lock", "UNLOCK": "unlock",
}

// Metrics are an appliance's Prometheus metrics: HTTP requests (count by method and
// status, latency, in flight), store commits and bytes written (from store.Options.OnCommit),
// the size of the data directory's repositories, log records by level (warnings and errors
// are the appliance's errors), and Go runtime and process figures. Every series carries
// the label appliance. Appliances add their own through Registry.
//
// Where /metrics is served is the appliance's choice; Hearth's appliances serve it on a
// separate listener (-metrics ADDR) that must be a loopback address (MetricsListener), so
// no credentials are needed and nothing leaks off the machine.
type Metrics struct {
	name     string
	reg      *Registry
	requests *CounterVec
	latency  *HistogramVec
	inflight *Gauge
	commits  *Counter
	changes  *Counter
	written  *Counter
	logs     *CounterVec

	sizesOnce sync.Once
	connsOnce sync.Once
	conns     *ConnMetrics
}

// NewMetrics returns the metrics of the named appliance with the Go and process figures
// registered.
func NewMetrics(appliance string) *Metrics {
	reg, err := NewRegistry(Label{"appliance", appliance})
	if err != nil { // cannot happen: the label name is valid
		reg = &Registry{fams: map[string]*family{}, scrape: make(chan struct{}, 4)}
	}
	m := &Metrics{
		name: appliance,
		reg:  reg,
		requests: NewCounterVec("hearth_http_requests_total",
			"HTTP requests answered, by method and status code.", "method", "code"),
		latency: NewHistogramVec("hearth_http_request_duration_seconds",
			"Time from a request's headers to the end of its answer, by method.",
			[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}, "method"),
		inflight: NewGauge("hearth_http_requests_in_flight", "HTTP requests being answered."),
		commits:  NewCounter("hearth_store_commits_total", "Store commits written by this process (group commits count once)."),
		changes:  NewCounter("hearth_store_changes_total", "Store changes (atomic writes) committed by this process."),
		written:  NewCounter("hearth_store_written_bytes_total", "Bytes of new values committed by this process."),
		logs: NewCounterVec("hearth_log_records_total",
			"Log records by level; WARN and ERROR count the appliance's errors.", "level"),
	}
	// The names are fixed and distinct, so registering cannot fail.
	_ = reg.Register(m.requests, m.latency, m.inflight, m.commits, m.changes, m.written, m.logs)
	_ = RegisterProcessMetrics(reg)
	return m
}

// Registry is where an appliance registers metrics of its own; their series carry the
// appliance label.
func (m *Metrics) Registry() *Registry { return m.reg }

// Middleware counts and times every request h answers.
func (m *Metrics) Middleware(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.inflight.Inc()
		defer m.inflight.Dec()
		sw := &codeWriter{ResponseWriter: w}
		defer func() {
			method, ok := httpMethods[r.Method]
			if !ok {
				method = "unknown"
			}
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			m.requests.WithLabelValues(method, strconv.Itoa(code)).Inc()
			m.latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
		}()
		h.ServeHTTP(sw, r)
	})
}

// codeWriter records the status code of an answer; it keeps http.Flusher and, through
// Unwrap, everything http.ResponseController offers.
type codeWriter struct {
	http.ResponseWriter
	code int
}

func (c *codeWriter) WriteHeader(code int) {
	if c.code == 0 && code >= 200 {
		c.code = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *codeWriter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return c.ResponseWriter.Write(b)
}

func (c *codeWriter) ReadFrom(r io.Reader) (int64, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return io.Copy(c.ResponseWriter, r)
}

func (c *codeWriter) Flush() {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	http.NewResponseController(c.ResponseWriter).Flush()
}

func (c *codeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler { return m.reg.Handler() }

// OnCommit counts a store commit; pass it as store.Options.OnCommit.
func (m *Metrics) OnCommit(c store.CommitStats) {
	m.commits.Inc()
	m.changes.Add(float64(c.Changes))
	m.written.Add(float64(c.Bytes))
}

// maxSizeFiles bounds the files one size scan looks at.
const maxSizeFiles = 1 << 20

// WatchRepoSizes adds gauges of the repositories below root: how many there are and the
// bytes they take on disk. A scrape rescans at most once per interval (<= 0: a minute).
// Only the first call counts.
func (m *Metrics) WatchRepoSizes(root string, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	var mu sync.Mutex
	var at time.Time
	var repos, size float64
	scan := func() (float64, float64) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(at) < interval {
			return repos, size
		}
		at = time.Now()
		repos, size = 0, 0
		files := 0
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if files++; files > maxSizeFiles {
				return filepath.SkipAll
			}
			if d.IsDir() && strings.HasSuffix(d.Name(), ".git") {
				repos++
			}
			if d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					size += float64(fi.Size())
				}
			}
			return nil
		})
		return repos, size
	}
	m.sizesOnce.Do(func() {
		_ = m.reg.Register(
			NewGaugeFunc("hearth_store_repositories", "Repositories in the data directory.",
				func() float64 { n, _ := scan(); return n }),
			NewGaugeFunc("hearth_store_disk_bytes", "Bytes the data directory's repositories take on disk.",
				func() float64 { _, s := scan(); return s }))
	})
}

// CountLogs returns a handler that counts the records h handles by level, then passes
// them on.
func (m *Metrics) CountLogs(h slog.Handler) slog.Handler { return &countingHandler{h, m.logs} }

type countingHandler struct {
	slog.Handler
	c *CounterVec
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.Enabled(ctx, r.Level) {
		h.c.WithLabelValues(r.Level.String()).Inc()
	}
	return h.Handler.Handle(ctx, r)
}

func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &countingHandler{h.Handler.WithAttrs(as), h.c}
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	return &countingHandler{h.Handler.WithGroup(name), h.c}
}

// MetricsListener listens on addr for a /metrics endpoint, which must be a loopback
// address: the metrics are served without credentials.
func MetricsListener(addr string) (net.Listener, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("signpost: metrics address %q: %w", addr, err)
	}
	if !IsLoopbackAddr(addr) {
		return nil, fmt.Errorf("signpost: metrics address %q: must be a loopback address (metrics are served without credentials)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("signpost: metrics: %w", err)
	}
	return ln, nil
}

// MetricsUnavailable reports whether err, from MetricsListener, says only that the
// metrics port is taken right now: an appliance then serves without /metrics rather
// than not at all (a bad address is still an error).
func MetricsUnavailable(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE)
}

// ServeMetrics serves m at /metrics on ln until ctx ends; its log records carry
// server=metrics.
func (m *Metrics) ServeMetrics(ctx context.Context, ln net.Listener, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	return ServeHTTP(ctx, []net.Listener{ln}, mux, ServeOptions{Logger: logger.With("server", "metrics"), ReleaseMemory: -1})
}
