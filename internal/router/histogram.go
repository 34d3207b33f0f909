package router

import (
	"sync/atomic"
	"time"
)

// TimeBuckets are the upper bounds of the router's timing histograms
// (transaction time, wait for a server connection): from 100µs, where a
// pooled transaction on a local server ends, to 60s, beyond hold_timeout's
// default. Metrics exports them as Prometheus histograms.
var TimeBuckets = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second,
	10 * time.Second, 30 * time.Second, 60 * time.Second,
}

// Histogram counts durations into TimeBuckets. Observe is lock-free (a few
// atomic adds), so it sits on the path of every transaction; the router
// has no dependency on a metrics library.
type Histogram struct {
	counts [len(TimeBuckets) + 1]atomic.Uint64 // per bucket, the last one above every bound
	sum    atomic.Int64                        // nanoseconds
}

// Observe adds one duration.
func (h *Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(TimeBuckets) && d > TimeBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// HistogramSnapshot is a histogram's state at one moment.
type HistogramSnapshot struct {
	// Cumulative[i] counts observations <= TimeBuckets[i].
	Cumulative []uint64
	Count      uint64
	Sum        time.Duration
}

// Snapshot returns the histogram's counts. Concurrent observations may be
// half-counted (in a bucket but not yet in the sum); that is fine for
// monitoring.
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Cumulative: make([]uint64, len(TimeBuckets))}
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
		if i < len(TimeBuckets) {
			s.Cumulative[i] = n
		}
	}
	s.Count = n
	s.Sum = time.Duration(h.sum.Load())
	return s
}
