package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/discovery"
)

// Options are what switchover and exec share. Config and Database are
// required; the zero value of the rest means the documented default.
type Options struct {
	// Config is the local proxy's configuration: the database's
	// discovery, drain_timeout, and (when Proxies is nil) the admin
	// consoles to pause.
	Config   *config.Config
	Database string
	// Proxies are the proxies to pause. nil means the local proxy's
	// console and the others' (Consoles(ctx, Config, true, Database,
	// Log): the config's peers and, with consul_register, the instances
	// registered in Consul). The pipeline closes them when it ends.
	Proxies []Proxy
	// Timeout bounds the whole command (default 60s for a switchover,
	// 120s for exec); the undos run after it, on their own.
	Timeout time.Duration
	// DrainTimeout bounds each proxy's wait for the transactions in
	// flight (PAUSE ... TIMEOUT); default the config's drain_timeout.
	DrainTimeout time.Duration
	Log          *slog.Logger

	// heldBudget bounds the held phase, PAUSE to RESUME (holdbudget.go).
	heldBudget time.Duration
}

// expireMargin is added to the time left when the pauses are set to
// expire: the pipeline resumes traffic itself before; the expiry only
// matters if this process dies.
const expireMargin = 30 * time.Second

// Report is what a pipeline did.
type Report struct {
	Database string
	Steps    []StepResult
	Proxies  []string
	// Held is how long traffic was held: from the start of the pause to
	// the end of the resume (clients saw at most this much extra latency).
	Held time.Duration
	// From and To name the primary before and after ("name (host:port)"
	// for a switchover; the verified address for exec).
	From, To string
	// PatroniAnswer is Patroni's answer to POST /switchover.
	PatroniAnswer string
	// ExitCode is exec's command's exit status.
	ExitCode int
}

// prepare validates o and fills its defaults, and logs the proxies to
// pause.
func (o *Options) prepare(ctx context.Context, what string, defaultTimeout time.Duration) (*config.Database, error) {
	if o.Config == nil {
		return nil, errors.New("no configuration")
	}
	if o.Database == "" {
		names := make([]string, 0, len(o.Config.Databases))
		for n := range o.Config.Databases {
			if n != "*" {
				names = append(names, n)
			}
		}
		if len(names) != 1 {
			slices.Sort(names)
			return nil, fmt.Errorf("name the database (--database): %s has %d: %v", o.Config.File, len(names), names)
		}
		o.Database = names[0]
	}
	dc, ok := o.Config.Databases[o.Database]
	if !ok || o.Database == "*" {
		return nil, fmt.Errorf("%s has no [databases.%s]", o.Config.File, o.Database)
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = o.Config.Proxy.DrainTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := o.fitHold(what); err != nil {
		return nil, err
	}
	if o.Proxies == nil {
		ps, err := Consoles(ctx, o.Config, true, o.Database, o.Log)
		if err != nil {
			return nil, err
		}
		o.Proxies = ps
	}
	o.Log.Info("proxies to pause", slog.Int("count", len(o.Proxies)), slog.String("proxies", Describe(o.Proxies)))
	return dc, nil
}

// expiry is how long after the PAUSE the proxies resume by themselves.
func expiry(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl) + expireMargin
	}
	return 2 * expireMargin
}

// checkProxies is the first step: every proxy answers, knows db, and is not
// paused by someone else (the pipeline's RESUME would end that pause too).
// With needVerified, each must serve db from a verified primary. It
// returns the states.
func checkProxies(ctx context.Context, f fleet, db string, needVerified bool) ([]State, error) {
	states, err := f.states(ctx, db)
	if err != nil {
		return nil, err
	}
	var errs []error
	for i, st := range states {
		switch {
		case st.Paused:
			errs = append(errs, fmt.Errorf("%s: %s is paused already; RESUME it first (this command would end that pause)", f[i].Name(), db))
		case needVerified && st.Verified == "":
			errs = append(errs, fmt.Errorf("%s: %s has no verified writable primary now (discovery names %s)", f[i].Name(), db, orNone(st.Primary)))
		}
	}
	return states, errors.Join(errs...)
}

// discoverTimeout bounds the wait for the discovery source's first answer.
const discoverTimeout = 10 * time.Second

// discoverAPIs runs a discovery source of dc's kind until it names a
// primary with a REST API URL, and returns the members' API URLs, the
// primary's first, then the configured ones (configured: patroni_urls'
// base URLs without credentials).
func discoverAPIs(ctx context.Context, dc *config.Database, configured []string) ([]string, error) {
	// The source's own log lines (the first "primary changed") would only
	// confuse the command's output: its errors come back below.
	opts := discovery.Options{Interval: dc.PollInterval, FastInterval: dc.FastPollInterval, PatroniAPI: patroniAPI(dc)}
	var src discovery.Source
	switch dc.Discovery {
	case config.DiscoveryPatroni:
		src = discovery.NewPatroni(dc.PatroniURLs, opts)
	case config.DiscoveryConsul:
		src = discovery.NewConsul(discovery.ConsulConfig{
			Addr: dc.ConsulAddr, Scheme: dc.ConsulScheme, Token: dc.ConsulToken, Datacenter: dc.ConsulDatacenter,
			CAFile: dc.ConsulCAFile, Service: dc.ConsulService, Namespace: dc.ConsulNamespace,
		}, opts)
	default:
		return nil, fmt.Errorf("database %s uses %s discovery: a switchover needs patroni or consul", dc.Name, dc.Discovery)
	}
	ctx, cancel := context.WithTimeout(ctx, discoverTimeout)
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	for {
		snap := src.Snapshot()
		changed := src.Changed()
		if p := snap.Primary; p != nil && p.APIURL != "" {
			urls := []string{p.APIURL}
			for _, m := range snap.Replicas {
				if m.APIURL != "" && !slices.Contains(urls, m.APIURL) {
					urls = append(urls, m.APIURL)
				}
			}
			for _, u := range configured {
				if !slices.Contains(urls, u) {
					urls = append(urls, u)
				}
			}
			return urls, nil
		}
		select {
		case <-ctx.Done():
			why := "no primary with a REST API URL named"
			if snap.Err != nil {
				why = snap.Err.Error()
			}
			return nil, fmt.Errorf("%s discovery: %s: %w", dc.Discovery, why, ctx.Err())
		case <-changed:
		}
	}
}

// lockScope names the cluster for the lock: the Patroni scope when known.
func lockScope(ctx context.Context, dc *config.Database, apis []string) string {
	switch dc.Discovery {
	case config.DiscoveryConsul:
		return dc.ConsulService
	case config.DiscoveryPatroni:
		patroni, err := newPatroniClient(dc)
		if err != nil {
			break
		}
		if len(apis) == 0 {
			apis = patroni.configured
		}
		if s, err := patroni.scope(ctx, apis); err == nil {
			return s
		}
	}
	return "database-" + dc.Name
}
