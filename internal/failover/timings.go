package failover

import (
	"context"
	"log/slog"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/discovery"
)

// Sizing hold_timeout to the cluster: a transaction held during an
// unplanned failover waits until Patroni has let the dead leader's key
// expire (ttl), a replica's HA loop has taken it (loop_wait) and promoted,
// and the proxy has verified the new primary. With hold_timeout shorter
// than that, held clients get 57P03 in every unplanned failover. At
// startup and on each reload, the manager reads the timings from Patroni's
// REST API (GET /config) for each database behind Patroni and warns when
// hold_timeout is short (docs/operations.md, "Sizing hold_timeout").

// timingsTimeout bounds one check, the wait for a Consul-discovered
// member's REST API URL included.
const timingsTimeout = 15 * time.Second

// checkTimings starts the hold_timeout check of database dc in the
// background. Called with m.mu held.
func (m *Manager) checkTimingsLocked(cfg *config.Config, dc *config.Database) {
	if dc.Discovery != config.DiscoveryPatroni && dc.Discovery != config.DiscoveryConsul {
		return
	}
	hold := cfg.Proxy.HoldTimeout
	api := patroniAPI(dc)
	urls := dc.PatroniURLs
	name := dc.Name
	m.bg.Go(func() {
		ctx, cancel := context.WithTimeout(m.bgCtx, timingsTimeout)
		defer cancel()
		if len(urls) == 0 {
			// Consul discovery: the members' REST API URLs come with
			// the source's snapshots.
			urls = m.apiURLs(ctx, name)
		}
		log := m.log.With(slog.String("database", name))
		if len(urls) == 0 {
			log.Warn("cannot size hold_timeout to the cluster: no Patroni REST API URL known (set patroni_urls)")
			return
		}
		t, err := discovery.FetchPatroniTimings(ctx, urls, api)
		if err != nil {
			if m.bgCtx.Err() == nil {
				log.Warn("cannot size hold_timeout to the cluster: reading Patroni's /config failed", slog.Any("err", err))
			}
			return
		}
		need := t.UnplannedFailover()
		attrs := []any{slog.Duration("hold_timeout", hold), slog.Duration("unplanned_failover", need),
			slog.Duration("ttl", t.TTL), slog.Duration("loop_wait", t.LoopWait),
			slog.Duration("retry_timeout", t.RetryTimeout), slog.String("patroni", t.URL)}
		if hold < need {
			log.Warn("hold_timeout is shorter than an unplanned failover of this Patroni cluster can take (ttl + loop_wait + 5s): clients held through one will get 57P03; raise hold_timeout to at least unplanned_failover", attrs...)
			return
		}
		log.Info("hold_timeout covers an unplanned failover of this Patroni cluster", attrs...)
	})
}

// apiURLs waits for database name's engine to know the REST API URLs of
// its members.
func (m *Manager) apiURLs(ctx context.Context, name string) []string {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if e, ok := m.Engine(name); ok {
			if snap := e.Status().Snapshot; snap != nil {
				var urls []string
				for _, mb := range append([]discovery.Member{derefMember(snap.Primary)}, snap.Replicas...) {
					if mb.APIURL != "" {
						urls = append(urls, mb.APIURL)
					}
				}
				if len(urls) > 0 {
					return urls
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func derefMember(m *discovery.Member) discovery.Member {
	if m == nil {
		return discovery.Member{}
	}
	return *m
}
