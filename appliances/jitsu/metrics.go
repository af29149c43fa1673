package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-home/hearth/jitsu"
)

// metrics are jitsu's Prometheus metrics: summons and their latency as they happen,
// DNS queries and appliance states read at each scrape.
type metrics struct {
	reg     *prometheus.Registry
	summons *prometheus.CounterVec
	latency *prometheus.HistogramVec
	status  func() []jitsu.ApplianceStatus // both backends
	dns     *jitsu.DNSServer
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		summons: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_summons_total", Help: "Appliance starts triggered by a lookup, a connection or a summon call.",
		}, []string{"appliance"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jitsu_summon_latency_seconds",
			Help:    "From the trigger to the appliance's process having started.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .5, 1, 5},
		}, []string{"appliance"}),
	}
	m.reg.MustRegister(m.summons, m.latency, m)
	return m
}

// observe is the Summoner's OnSummon hook.
func (m *metrics) observe(appliance string, latency time.Duration) {
	m.summons.WithLabelValues(appliance).Inc()
	m.latency.WithLabelValues(appliance).Observe(latency.Seconds())
}

var (
	queriesDesc = prometheus.NewDesc("jitsu_dns_queries_total", "DNS queries answered, by type.", []string{"type"}, nil)
	rcodesDesc  = prometheus.NewDesc("jitsu_dns_responses_total", "DNS responses, by rcode.", []string{"rcode"}, nil)
	stateDesc   = prometheus.NewDesc("jitsu_appliance_running", "1 when the appliance's process or VM runs.", []string{"appliance"}, nil)
	restartDesc = prometheus.NewDesc("jitsu_appliance_restarts_total", "Restarts after crashes.", []string{"appliance"}, nil)
)

// Describe implements prometheus.Collector for the values read at scrape time.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queriesDesc, rcodesDesc, stateDesc, restartDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	if m.dns != nil {
		st := m.dns.Stats()
		for t, n := range st.Queries {
			ch <- prometheus.MustNewConstMetric(queriesDesc, prometheus.CounterValue, float64(n), t)
		}
		for rc, n := range st.Rcodes {
			ch <- prometheus.MustNewConstMetric(rcodesDesc, prometheus.CounterValue, float64(n), rc)
		}
	}
	if m.status != nil {
		for _, a := range m.status() {
			running := 0.0
			if a.State == jitsu.StateRunning {
				running = 1
			}
			ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, running, a.Name)
			ch <- prometheus.MustNewConstMetric(restartDesc, prometheus.CounterValue, float64(a.Restarts), a.Name)
		}
	}
}
