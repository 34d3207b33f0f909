package discovery

import (
	"log/slog"
	"math/rand/v2"
	"time"
)

// Options are the settings shared by every source. The zero value means the
// defaults documented on each field.
type Options struct {
	// Interval between polls when nothing is happening. Default 1s.
	Interval time.Duration
	// FastInterval between polls while the snapshot says Changing, and for
	// FastPeriod after Hurry or after any change. Consul uses it as the
	// least time between two queries of one watch. Default 100ms.
	FastInterval time.Duration
	// FastPeriod is how long polling stays fast after Hurry or a change.
	// Default 5s.
	FastPeriod time.Duration
	// HTTPTimeout bounds one request to a source: a Patroni REST call, a
	// static probe, or a Consul query beyond its blocking wait. Default 1s.
	HTTPTimeout time.Duration
	// Logger gets one line per change of primary and per change of error
	// state, never one per poll. Default: discard.
	Logger *slog.Logger
	// PatroniAPI is how the Patroni source reaches the REST API:
	// credentials and TLS. The other sources ignore it.
	PatroniAPI PatroniAPI
}

// Defaults of Options.
const (
	DefaultInterval     = time.Second
	DefaultFastInterval = 100 * time.Millisecond
	DefaultFastPeriod   = 5 * time.Second
	DefaultHTTPTimeout  = time.Second
)

func (o Options) withDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.FastInterval <= 0 {
		o.FastInterval = DefaultFastInterval
	}
	if o.FastInterval > o.Interval {
		o.FastInterval = o.Interval
	}
	if o.FastPeriod <= 0 {
		o.FastPeriod = DefaultFastPeriod
	}
	if o.HTTPTimeout <= 0 {
		o.HTTPTimeout = DefaultHTTPTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// backoff is the wait after the n-th consecutive failure (n >= 1):
// FastInterval doubled each time, capped at five Intervals, with jitter of
// ±25% so that many proxies do not retry in step.
func (o Options) backoff(n int) time.Duration {
	d := o.FastInterval
	limit := 5 * o.Interval
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	jitter := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return d + jitter
}
