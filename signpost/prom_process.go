package signpost

import (
	"bytes"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"
)

// RegisterProcessMetrics adds the cheap process and Go runtime figures to r:
// process_resident_memory_bytes (from /proc/self/statm), process_cpu_seconds_total,
// process_open_fds, process_start_time_seconds, go_goroutines, go_memstats_heap_alloc_bytes,
// go_memstats_sys_bytes and go_gc_cycles_total (from runtime/metrics). The /proc figures
// are left out where there is no /proc.
func RegisterProcessMetrics(r *Registry) error {
	start := processStart()
	rt := &runtimeReader{samples: []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}}
	return r.Register(
		NewCollectFunc("process_resident_memory_bytes", "Resident memory size in bytes.", GaugeType, nil,
			func(emit func(float64, ...string)) {
				if v, ok := residentBytes(); ok {
					emit(v)
				}
			}),
		NewCollectFunc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", CounterType, nil,
			func(emit func(float64, ...string)) {
				if v, ok := cpuSeconds(); ok {
					emit(v)
				}
			}),
		NewCollectFunc("process_open_fds", "Number of open file descriptors.", GaugeType, nil,
			func(emit func(float64, ...string)) {
				if es, err := os.ReadDir("/proc/self/fd"); err == nil {
					emit(float64(len(es)))
				}
			}),
		NewGaugeFunc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
			func() float64 { return start }),
		NewGaugeFunc("go_goroutines", "Number of goroutines that currently exist.",
			func() float64 { return float64(runtime.NumGoroutine()) }),
		NewGaugeFunc("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use.",
			func() float64 { return rt.read(0) }),
		NewGaugeFunc("go_memstats_sys_bytes", "Number of bytes obtained from the system.",
			func() float64 { return rt.read(1) }),
		NewCounterFunc("go_gc_cycles_total", "Completed garbage collection cycles.",
			func() float64 { return rt.read(2) }),
	)
}

// runtimeReader reads runtime/metrics samples (one read serves the figures of a scrape
// that asks within a second).
type runtimeReader struct {
	mu      sync.Mutex
	at      time.Time
	samples []metrics.Sample
}

func (r *runtimeReader) read(i int) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.at) > time.Second {
		metrics.Read(r.samples)
		r.at = time.Now()
	}
	switch v := r.samples[i].Value; v.Kind() {
	case metrics.KindUint64:
		return float64(v.Uint64())
	case metrics.KindFloat64:
		return v.Float64()
	}
	return 0
}

// residentBytes is the second field of /proc/self/statm (pages) times the page size.
func residentBytes() (float64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		return 0, false
	}
	return float64(pages) * float64(os.Getpagesize()), true
}

// userHZ is the unit of the times in /proc/PID/stat, fixed at 100 by Linux's ABI.
const userHZ = 100

// procStatFields returns the fields of /proc/self/stat after the command name (field 3
// onwards, so field N is at index N-3).
func procStatFields() ([][]byte, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return nil, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, false
	}
	return bytes.Fields(b[i+1:]), true
}

// cpuSeconds is utime + stime (fields 14 and 15 of /proc/self/stat).
func cpuSeconds() (float64, bool) {
	f, ok := procStatFields()
	if !ok || len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseUint(string(f[14-3]), 10, 64)
	st, err2 := strconv.ParseUint(string(f[15-3]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return float64(ut+st) / userHZ, true
}

// processStart is the process's start time in seconds since the epoch: boot time (btime
// of /proc/stat) plus field 22 of /proc/self/stat; without /proc, now.
func processStart() float64 {
	now := float64(time.Now().UnixNano()) / 1e9
	f, ok := procStatFields()
	if !ok || len(f) < 20 {
		return now
	}
	ticks, err := strconv.ParseUint(string(f[22-3]), 10, 64)
	if err != nil {
		return now
	}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return now
	}
	for _, line := range bytes.Split(stat, []byte{'\n'}) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			if bt, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64); err == nil {
				return float64(bt) + float64(ticks)/userHZ
			}
		}
	}
	return now
}
