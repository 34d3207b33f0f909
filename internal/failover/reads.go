package failover

import (
	"context"
	"log/slog"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/discovery"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// ReadOptions tunes a ReadWatcher.
type ReadOptions struct {
	// MaxLagBytes and MaxLagTime (max_replica_lag; 0: no limit) take a
	// replica further behind out of the read pool. A replica whose lag
	// the source does not know is out while a byte limit is set.
	MaxLagBytes int64
	MaxLagTime  time.Duration
	// Recheck is how often the snapshot is looked at again even when the
	// source announced nothing (lag changes do not announce; default 1s).
	Recheck time.Duration
	Log     *slog.Logger
}

// ReadWatcher keeps a database's usable replicas (router.Database
// SetReplicas) in line with a discovery source: a replica is usable while
// the source calls it a replica, running or streaming, not tagged
// nofailover or noloadbalance, with an address, and within max_replica_lag.
// A replica being promoted leaves the set as soon as the source no longer
// calls it a replica (Patroni names the leader before its promotion ends),
// and the router's dial checks pg_is_in_recovery() = true on every new
// connection in between. It never holds the primary's traffic.
type ReadWatcher struct {
	db   *router.Database
	src  discovery.Source
	opts ReadOptions
	log  *slog.Logger
}

// NewReadWatcher returns a watcher for db fed by src. Call Run.
func NewReadWatcher(db *router.Database, src discovery.Source, opts ReadOptions) *ReadWatcher {
	if opts.Recheck <= 0 {
		opts.Recheck = time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &ReadWatcher{db: db, src: src, opts: opts, log: opts.Log.With(slog.String("database", db.Name))}
}

// Run watches until ctx is done; with runSource it runs the source too
// (a replica-only database's own; a read-write database's engine runs
// the source they share).
func (w *ReadWatcher) Run(ctx context.Context, runSource bool) {
	if runSource {
		go w.src.Run(ctx)
	}
	tick := time.NewTicker(w.opts.Recheck)
	defer tick.Stop()
	var last []string
	for {
		snap := w.src.Snapshot()
		changed := w.src.Changed()
		if applied, ok := w.apply(snap, last); ok {
			last = applied
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// apply hands the usable replicas of snap to the database. A snapshot
// from a source that cannot be reached (an error and no members) changes
// nothing: the replicas keep serving, each new connection checked.
func (w *ReadWatcher) apply(snap *discovery.Snapshot, last []string) ([]string, bool) {
	if snap.Updated.IsZero() && snap.Err == nil {
		return nil, false // no answer yet
	}
	if snap.Err != nil && snap.Primary == nil && len(snap.Replicas) == 0 {
		if last == nil {
			// Never had an answer: say so (a read-only database is
			// held while no replica is known).
			w.db.SetReplicas(nil, nil)
			return []string{}, true
		}
		return nil, false
	}
	var usable []router.Addr
	var names []string
	for _, m := range snap.Replicas {
		if why := w.unusable(m, snap); why != "" {
			continue
		}
		usable = append(usable, router.Addr{Host: m.Host, Port: m.Port})
		names = append(names, m.Addr())
	}
	var primary *router.Addr
	if p := snap.Primary; p != nil {
		primary = &router.Addr{Host: p.Host, Port: p.Port}
	}
	w.db.SetReplicas(usable, primary)
	if names == nil {
		names = []string{}
	}
	return names, true
}

// unusable says why replica m takes no reads, or "".
func (w *ReadWatcher) unusable(m discovery.Member, snap *discovery.Snapshot) string {
	switch {
	case m.Host == "" || m.Port == 0:
		return "no address"
	case m.Role != "replica":
		return "role " + m.Role // a leader being promoted, a standby leader, unknown
	case m.State != "running" && m.State != "streaming":
		return "state " + m.State
	case m.NoLoadBalance:
		return "tagged noloadbalance"
	case m.NoFailover:
		return "tagged nofailover"
	case snap.Primary != nil && snap.Primary.Addr() == m.Addr():
		return "named primary"
	case w.opts.MaxLagBytes > 0 && (m.LagBytes < 0 || m.LagBytes > w.opts.MaxLagBytes):
		return "lagging"
	case w.opts.MaxLagTime > 0 && m.ReplayDelay > w.opts.MaxLagTime:
		return "lagging"
	}
	return ""
}
