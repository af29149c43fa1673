package dashboard

import (
	"net/http"
	"strconv"
	"time"

	"github.com/hearth-home/hearth/signpost"
)

// metrics are the dashboard's Prometheus metrics.
type metrics struct {
	requests     *signpost.CounterVec
	latency      *signpost.HistogramVec
	logins       *signpost.CounterVec
	restores     *signpost.CounterVec
	csrfRejected *signpost.Counter
	errors       *signpost.Counter
	handler      http.Handler // nil when the metrics went to Options.Registerer
}

// newMetrics registers the metrics with reg, or (nil) with a registry of their own that
// the handler serves.
func newMetrics(reg *signpost.Registry) (*metrics, error) {
	m := &metrics{
		requests: signpost.NewCounterVec("dashboard_requests_total",
			"HTTP requests by route pattern and status code.", "route", "code"),
		latency: signpost.NewHistogramVec("dashboard_request_seconds", "Time to answer a request, by route pattern.",
			[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, 1, 5}, "route"),
		logins: signpost.NewCounterVec("dashboard_logins_total",
			"Login attempts by result (ok, failed, throttled).", "result"),
		restores: signpost.NewCounterVec("dashboard_restores_total",
			"Restores of deleted items by service and result.", "service", "result"),
		csrfRejected: signpost.NewCounter("dashboard_csrf_rejected_total",
			"Requests refused for a missing or wrong CSRF token or a cross-origin source."),
		errors: signpost.NewCounter("dashboard_errors_total", "Requests answered with a server error."),
	}
	if reg == nil {
		own, err := signpost.NewRegistry()
		if err != nil {
			return nil, err
		}
		if err := signpost.RegisterProcessMetrics(own); err != nil {
			return nil, err
		}
		reg, m.handler = own, own.Handler()
	}
	if err := reg.Register(m.requests, m.latency, m.logins, m.restores, m.csrfRejected, m.errors); err != nil {
		return nil, err
	}
	return m, nil
}

// statusWriter records the status code.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// instrument counts and times every request by its route pattern in mux.
func (m *metrics) instrument(next http.Handler, mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		_, route := mux.Handler(r)
		if route == "" {
			route = "none"
		}
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		m.requests.WithLabelValues(route, itoa(sw.code)).Inc()
		m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// metricsPage serves the metrics to loopback clients and the admin.
func (h *Handler) metricsPage(w http.ResponseWriter, r *http.Request) {
	if !isLoopback(r) {
		if sess := h.sessionOf(r); sess == nil || sess.user != AdminUser {
			http.Error(w, "metrics are for loopback clients and the admin", http.StatusForbidden)
			return
		}
	}
	h.met.handler.ServeHTTP(w, r)
}

func itoa(n int) string { return strconv.Itoa(n) }
