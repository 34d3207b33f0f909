package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// PatroniTimings are the settings of Patroni's dynamic configuration that
// decide how long an unplanned failover leaves a cluster without a
// writable primary (Patroni docs, "Dynamic Configuration Settings").
type PatroniTimings struct {
	TTL          time.Duration // ttl: how long the leader key lives without being renewed
	LoopWait     time.Duration // loop_wait: the HA loop's sleep
	RetryTimeout time.Duration // retry_timeout: DCS and PostgreSQL operation retries
	URL          string        // the REST API that answered, without credentials
}

// Patroni's defaults, used for keys /config does not carry.
const (
	defaultTTL          = 30 * time.Second
	defaultLoopWait     = 10 * time.Second
	defaultRetryTimeout = 10 * time.Second
)

// FailoverMargin is added to ttl + loop_wait for the promotion itself and
// the proxy's check of the new primary (pg_is_in_recovery() polled every
// fast_poll_interval): a promotion on a small local cluster took about 2 s
// (internal/patronitest); 5 s leaves room for a larger one.
const FailoverMargin = 5 * time.Second

// UnplannedFailover is how long an unplanned failover can take: the dead
// leader's key expires at most ttl after its last renewal, a replica's
// next HA loop (loop_wait) takes the key and promotes, then the margin.
// Held transactions need hold_timeout at least this long to survive one.
func (t PatroniTimings) UnplannedFailover() time.Duration {
	return t.TTL + t.LoopWait + FailoverMargin
}

// FetchPatroniTimings GETs /config (Patroni's dynamic configuration) from
// each of urls in turn until one answers, through api's credentials and
// TLS settings.
func FetchPatroniTimings(ctx context.Context, urls []string, api PatroniAPI) (PatroniTimings, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	h, bases, err := NewPatroniHTTP(api, urls, tr)
	if err != nil {
		return PatroniTimings{}, err
	}
	if len(bases) == 0 {
		return PatroniTimings{}, errors.New("no Patroni REST API URL")
	}
	var errs []error
	for _, base := range bases {
		var cfg struct {
			TTL          any `json:"ttl"`
			LoopWait     any `json:"loop_wait"`
			RetryTimeout any `json:"retry_timeout"`
		}
		if err := h.GetJSON(ctx, base+"/config", &cfg); err != nil {
			errs = append(errs, err)
			continue
		}
		t := PatroniTimings{URL: base}
		var perr []error
		t.TTL, perr = seconds(cfg.TTL, defaultTTL, "ttl", perr)
		t.LoopWait, perr = seconds(cfg.LoopWait, defaultLoopWait, "loop_wait", perr)
		t.RetryTimeout, perr = seconds(cfg.RetryTimeout, defaultRetryTimeout, "retry_timeout", perr)
		if len(perr) > 0 {
			return t, fmt.Errorf("GET %s/config: %w", base, errors.Join(perr...))
		}
		return t, nil
	}
	return PatroniTimings{}, errors.Join(errs...)
}

// seconds reads a number of seconds of Patroni's configuration (a JSON
// number, or a string holding one, as patronictl edit-config may leave
// it); def when it is not set.
func seconds(v any, def time.Duration, key string, errs []error) (time.Duration, []error) {
	var f float64
	switch x := v.(type) {
	case nil:
		return def, errs
	case float64:
		f = x
	case string:
		if _, err := fmt.Sscanf(x, "%g", &f); err != nil {
			return def, append(errs, fmt.Errorf("%s: not a number of seconds: %q", key, x))
		}
	default:
		return def, append(errs, fmt.Errorf("%s: not a number of seconds: %v", key, v))
	}
	if f < 0 {
		return def, append(errs, fmt.Errorf("%s: negative: %v", key, f))
	}
	return time.Duration(f * float64(time.Second)), errs
}
