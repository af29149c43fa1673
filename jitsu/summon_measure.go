package jitsu

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"time"
)

// MaxMeasureRuns bounds MeasureOptions.Runs.
const MaxMeasureRuns = 100000

// MeasureOptions tune MeasureSummon.
type MeasureOptions struct {
	// Runs is the number of connections timed (<= 0: 100; at most MaxMeasureRuns).
	Runs int
	// Warm leaves the appliance running between runs (warm latency); otherwise each run
	// first stops it, so every connection summons it cold.
	Warm bool
	// Send is written right after connecting, for appliances that speak only when spoken
	// to (e.g. "GET / HTTP/1.0\r\n\r\n"); nil for those that greet first.
	Send []byte
	// Timeout bounds each run (<= 0: 10s).
	Timeout time.Duration
}

// LatencyStats summarises measured latencies.
type LatencyStats struct {
	Runs                    int
	Min, P50, P90, P99, Max time.Duration
}

// String formats s on one line.
func (s LatencyStats) String() string {
	return fmt.Sprintf("runs=%d min=%v p50=%v p90=%v p99=%v max=%v", s.Runs, s.Min, s.P50, s.P90, s.P99, s.Max)
}

// MeasureSummon times connections to socket of appliance name, which s runs: from the
// start of connect to the first byte the appliance sends. Unless opts.Warm, each run first
// stops the appliance, so it measures the whole summon (jitsu noticing the connection,
// starting the process, the appliance accepting and answering).
func MeasureSummon(ctx context.Context, s *Summoner, name, socket string, opts MeasureOptions) (LatencyStats, error) {
	runs := opts.Runs
	if runs <= 0 {
		runs = 100
	}
	if runs > MaxMeasureRuns {
		return LatencyStats{}, fmt.Errorf("jitsu: measure %q: %d runs, at most %d", name, runs, MaxMeasureRuns)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	addr, err := s.Addr(name, socket)
	if err != nil {
		return LatencyStats{}, err
	}
	dialAddr := addr.String()
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		dialAddr = net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port)) // listening everywhere
	}
	ds := make([]time.Duration, 0, runs)
	var d net.Dialer
	for i := range runs {
		if !opts.Warm {
			if err := s.Stop(ctx, name); err != nil {
				return LatencyStats{}, err
			}
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		t0 := time.Now()
		c, err := d.DialContext(rctx, "tcp", dialAddr)
		if err != nil {
			cancel()
			return LatencyStats{}, fmt.Errorf("jitsu: measure %q: run %d: %w", name, i, err)
		}
		if dl, ok := rctx.Deadline(); ok {
			c.SetDeadline(dl)
		}
		var b [1]byte
		if len(opts.Send) > 0 {
			_, err = c.Write(opts.Send)
		}
		if err == nil {
			_, err = io.ReadFull(c, b[:])
		}
		ds = append(ds, time.Since(t0))
		c.Close()
		cancel()
		if err != nil {
			return LatencyStats{}, fmt.Errorf("jitsu: measure %q: run %d: %w", name, i, err)
		}
	}
	return summarise(ds), nil
}

// summarise returns the order statistics of ds (nearest rank).
func summarise(ds []time.Duration) LatencyStats {
	if len(ds) == 0 {
		return LatencyStats{}
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	q := func(p int) time.Duration {
		i := (len(ds)*p + 99) / 100 // nearest rank, 1-based
		return ds[max(i-1, 0)]
	}
	return LatencyStats{Runs: len(ds), Min: ds[0], P50: q(50), P90: q(90), P99: q(99), Max: ds[len(ds)-1]}
}
