package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/discovery"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// Manager runs one engine per configured database and keeps them in line
// with the configuration across reloads.
type Manager struct {
	r       *router.Router
	log     *slog.Logger
	onEvent func(Event)

	mu      sync.Mutex
	engines map[string]*managed
	closed  bool

	// bg runs the background checks (timings.go), ended by bgCancel.
	bg       sync.WaitGroup
	bgCtx    context.Context
	bgCancel context.CancelFunc

	reachMu    sync.Mutex // guards reachCache (ready.go)
	reachCache map[string]reachResult
}

type managed struct {
	eng    *Engine         // nil for a database whose target is not the primary
	reads  *ReadWatcher    // nil unless the database reads from replicas
	dc     config.Database // the settings it was started with
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager returns a manager for r's databases; onEvent (may be nil)
// receives every finished cycle.
func NewManager(r *router.Router, log *slog.Logger, onEvent func(Event)) *Manager {
	m := &Manager{r: r, log: log, onEvent: onEvent, engines: make(map[string]*managed)}
	m.bgCtx, m.bgCancel = context.WithCancel(context.Background())
	return m
}

// Sync starts an engine for each database of cfg that has none, restarts
// the ones whose discovery settings changed (a cut-over to another
// cluster), and stops the ones of removed databases. The "*" fallback
// entry has no engine: its databases are not held or fenced.
func (m *Manager) Sync(cfg *config.Config) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	for name, dc := range cfg.Databases {
		if name == "*" {
			continue
		}
		if dc.WantsPrimary() {
			m.checkTimingsLocked(cfg, dc)
		}
		if cur, ok := m.engines[name]; ok {
			if sameDiscovery(&cur.dc, dc) {
				if cur.eng != nil {
					cur.eng.SetOnSplitBrain(dc.OnSplitBrain)
				}
				continue
			}
			m.stopLocked(name)
		}
		db, ok := m.r.Database(name)
		if !ok {
			continue
		}
		if dc.TargetSessionAttrs == config.TargetAny {
			// What PgBouncer does: connect where the entry says, check
			// nothing, follow no primary.
			db.Unmanage()
			continue
		}
		src, err := newSource(dc, db, m.log)
		if err != nil {
			m.log.Error("cannot start discovery", slog.String("database", name), slog.Any("err", err))
			continue
		}
		me := &managed{dc: *dc, done: make(chan struct{})}
		if dc.WantsPrimary() {
			db.Manage()
			me.eng = New(db, src, Options{
				FastInterval: dc.FastPollInterval, OnSplitBrain: dc.OnSplitBrain,
				// A planned switchover's early hold must end well before
				// the held transactions' own limit.
				PlannedTimeout: min(10*time.Second, cfg.Proxy.HoldTimeout/2),
				HoldTimeout:    cfg.Proxy.HoldTimeout,
				Log:            m.log, OnEvent: m.onEvent,
			})
		} else {
			db.Unmanage()
		}
		if dc.WantsReplica() || dc.RoutesReadsToReplicas() {
			// Each source measures lag one way (config warns about the
			// other): Patroni and Consul in bytes, static hosts in time.
			ro := ReadOptions{Recheck: dc.PollInterval, Log: m.log}
			if dc.Discovery == config.DiscoveryStatic {
				ro.MaxLagTime = dc.MaxReplicaLagTime
			} else {
				ro.MaxLagBytes = dc.MaxReplicaLagBytes
			}
			me.reads = NewReadWatcher(db, src, ro)
		}
		ctx, cancel := context.WithCancel(context.Background())
		me.cancel = cancel
		m.engines[name] = me
		go me.run(ctx)
	}
	for name := range m.engines {
		if _, ok := cfg.Databases[name]; !ok {
			m.stopLocked(name)
		}
	}
}

// run runs the engine and the read watcher until ctx is done. The engine
// runs the source they share; a replica-only database's watcher runs it.
func (me *managed) run(ctx context.Context) {
	defer close(me.done)
	var wg sync.WaitGroup
	if me.reads != nil {
		wg.Go(func() { me.reads.Run(ctx, me.eng == nil) })
	}
	if me.eng != nil {
		me.eng.Run(ctx)
	}
	wg.Wait()
}

func (m *Manager) stopLocked(name string) {
	me := m.engines[name]
	me.cancel()
	<-me.done
	delete(m.engines, name)
}

// Close stops every engine and background check.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	m.bgCancel()
	for name := range m.engines {
		m.stopLocked(name)
	}
	m.mu.Unlock()
	m.bg.Wait()
}

// Engine returns the engine of database db.
func (m *Manager) Engine(db string) (*Engine, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	me, ok := m.engines[db]
	if !ok || me.eng == nil {
		return nil, false
	}
	return me.eng, true
}

// Topology returns database db's latest snapshot, the address verified
// writable ("" during a cycle) and when its primary last changed (admin
// SHOW TOPOLOGY).
func (m *Manager) Topology(db string) (*discovery.Snapshot, string, time.Time, bool) {
	m.mu.Lock()
	me, ok := m.engines[db]
	m.mu.Unlock()
	switch {
	case !ok:
		return nil, "", time.Time{}, false
	case me.eng == nil:
		// A replica-only database: what discovery says, no primary of
		// its own to verify.
		return me.reads.src.Snapshot(), "", time.Time{}, true
	}
	st := me.eng.Status()
	return st.Snapshot, st.Verified, st.LastChange, true
}

// WaitVerified blocks until database db has a verified primary other than
// not (any, when not is ""), and returns it.
func (m *Manager) WaitVerified(ctx context.Context, db, not string) (string, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if e, ok := m.Engine(db); ok {
			st := e.Status()
			if st.Verified != "" && st.Verified != not && !st.Cycling {
				return st.Verified, nil
			}
		} else {
			return "", fmt.Errorf("database %s has no role-change engine", db)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-t.C:
		}
	}
}

func sameDiscovery(a, b *config.Database) bool {
	return a.Discovery == b.Discovery && a.Host == b.Host && a.Port == b.Port &&
		reflect.DeepEqual(a.Hosts, b.Hosts) && reflect.DeepEqual(a.PatroniURLs, b.PatroniURLs) &&
		a.ConsulAddr == b.ConsulAddr && a.ConsulService == b.ConsulService &&
		a.ConsulNamespace == b.ConsulNamespace && a.ConsulToken == b.ConsulToken &&
		a.ConsulDatacenter == b.ConsulDatacenter && a.ConsulScheme == b.ConsulScheme &&
		a.ConsulCAFile == b.ConsulCAFile && a.ReadOnly == b.ReadOnly &&
		a.TargetSessionAttrs == b.TargetSessionAttrs && a.ReadOnlyRouting == b.ReadOnlyRouting &&
		a.MaxReplicaLag == b.MaxReplicaLag &&
		patroniAPI(a) == patroniAPI(b) &&
		a.PollInterval == b.PollInterval && a.FastPollInterval == b.FastPollInterval
}

// patroniAPI is how dc reaches Patroni's REST API.
func patroniAPI(dc *config.Database) discovery.PatroniAPI {
	return discovery.PatroniAPI{Username: dc.PatroniUsername, Password: dc.PatroniPassword,
		CAFile: dc.PatroniCAFile, CertFile: dc.PatroniCertFile, KeyFile: dc.PatroniKeyFile}
}

// newSource builds the discovery source a database entry asks for.
func newSource(dc *config.Database, db *router.Database, log *slog.Logger) (discovery.Source, error) {
	opts := discovery.Options{Interval: dc.PollInterval, FastInterval: dc.FastPollInterval, Logger: log.With(slog.String("database", dc.Name)), PatroniAPI: patroniAPI(dc)}
	switch dc.Discovery {
	case config.DiscoveryPatroni:
		return discovery.NewPatroni(dc.PatroniURLs, opts), nil
	case config.DiscoveryConsul:
		return discovery.NewConsul(discovery.ConsulConfig{
			Addr: dc.ConsulAddr, Scheme: dc.ConsulScheme, Token: dc.ConsulToken, Datacenter: dc.ConsulDatacenter,
			CAFile: dc.ConsulCAFile, Service: dc.ConsulService, Namespace: dc.ConsulNamespace,
		}, opts), nil
	default:
		hosts := dc.Hosts
		if len(hosts) == 0 {
			hosts = []string{net.JoinHostPort(dc.Host, strconv.Itoa(dc.Port))}
		}
		if dc.WantsReplica() || (dc.RoutesReadsToReplicas() && len(hosts) > 1) {
			// Every host's role and replay delay matter.
			return discovery.NewStaticRoles(hosts, func(ctx context.Context, addr string) (bool, time.Duration, error) {
				host, port, err := net.SplitHostPort(addr)
				if err != nil {
					return false, 0, err
				}
				p, _ := strconv.Atoi(port)
				w, delay, err := db.ProbeRole(ctx, host, p)
				if errors.Is(err, router.ErrNoLogin) {
					// No login to ask with before the first client's:
					// take the host as a replica; each new connection
					// checks pg_is_in_recovery() = true anyway.
					return false, 0, nil
				}
				return w, delay, err
			}, opts), nil
		}
		probe := func(ctx context.Context, addr string) (bool, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return false, err
			}
			p, _ := strconv.Atoi(port)
			// With no login known yet (ErrNoLogin) no host counts as
			// writable; the first client's login provides one and the
			// next poll finds the primary.
			return db.Probe(ctx, host, p)
		}
		return discovery.NewStatic(hosts, probe, opts), nil
	}
}

// Statuses returns each engine's status by database name.
func (m *Manager) Statuses() map[string]Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Status, len(m.engines))
	for name, me := range m.engines {
		if me.eng != nil {
			out[name] = me.eng.Status()
		}
	}
	return out
}
