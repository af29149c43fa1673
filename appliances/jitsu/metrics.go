package main

import (
	"time"

	"github.com/hearth-home/hearth/jitsu"
	"github.com/hearth-home/hearth/signpost"
)

// metrics are jitsu's Prometheus metrics: summons and their latency as they happen,
// DNS queries and appliance states read at each scrape, and process figures.
type metrics struct {
	reg     *signpost.Registry
	summons *signpost.CounterVec
	latency *signpost.HistogramVec
	status  func() []jitsu.ApplianceStatus // both backends
	dns     *jitsu.DNSServer
}

func newMetrics() (*metrics, error) {
	reg, err := signpost.NewRegistry()
	if err != nil {
		return nil, err
	}
	m := &metrics{
		reg: reg,
		summons: signpost.NewCounterVec("jitsu_summons_total",
			"Appliance starts triggered by a lookup, a connection or a summon call.", "appliance"),
		latency: signpost.NewHistogramVec("jitsu_summon_latency_seconds",
			"From the trigger to the appliance's process having started.",
			[]float64{.0005, .001, .002, .005, .01, .02, .05, .1, .5, 1, 5}, "appliance"),
	}
	err = reg.Register(m.summons, m.latency,
		signpost.NewCollectFunc("jitsu_dns_queries_total", "DNS queries answered, by type.",
			signpost.CounterType, []string{"type"}, m.collectQueries),
		signpost.NewCollectFunc("jitsu_dns_responses_total", "DNS responses, by rcode.",
			signpost.CounterType, []string{"rcode"}, m.collectRcodes),
		signpost.NewCollectFunc("jitsu_appliance_running", "1 when the appliance's process or VM runs.",
			signpost.GaugeType, []string{"appliance"}, m.collectRunning),
		signpost.NewCollectFunc("jitsu_appliance_restarts_total", "Restarts after crashes.",
			signpost.CounterType, []string{"appliance"}, m.collectRestarts),
		signpost.NewCollectFunc("jitsu_appliance_open_connections", "Open TCP connections of the running appliance (its process's, or held and spliced for a VM).",
			signpost.GaugeType, []string{"appliance"}, m.collectConns),
		signpost.NewCollectFunc("jitsu_appliance_resident_memory_bytes", "Resident memory of the running appliance's process (QEMU's for a VM).",
			signpost.GaugeType, []string{"appliance"}, m.collectRSS),
	)
	if err == nil {
		err = signpost.RegisterProcessMetrics(reg)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// observe is the Summoner's OnSummon hook.
func (m *metrics) observe(appliance string, latency time.Duration) {
	m.summons.WithLabelValues(appliance).Inc()
	m.latency.WithLabelValues(appliance).Observe(latency.Seconds())
}

func (m *metrics) collectQueries(emit func(float64, ...string)) {
	if m.dns != nil {
		for t, n := range m.dns.Stats().Queries {
			emit(float64(n), t)
		}
	}
}

func (m *metrics) collectRcodes(emit func(float64, ...string)) {
	if m.dns != nil {
		for rc, n := range m.dns.Stats().Rcodes {
			emit(float64(n), rc)
		}
	}
}

func (m *metrics) collectRunning(emit func(float64, ...string)) {
	if m.status != nil {
		for _, a := range m.status() {
			running := 0.0
			if a.State == jitsu.StateRunning {
				running = 1
			}
			emit(running, a.Name)
		}
	}
}

func (m *metrics) collectRestarts(emit func(float64, ...string)) {
	if m.status != nil {
		for _, a := range m.status() {
			emit(float64(a.Restarts), a.Name)
		}
	}
}

func (m *metrics) collectConns(emit func(float64, ...string)) {
	if m.status != nil {
		for _, a := range m.status() {
			emit(float64(a.Conns), a.Name)
		}
	}
}

func (m *metrics) collectRSS(emit func(float64, ...string)) {
	if m.status != nil {
		for _, a := range m.status() {
			emit(float64(a.RSS), a.Name)
		}
	}
}
