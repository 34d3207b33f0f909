package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pauseproxy/pauseproxy/internal/admin"
	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/failover"
	"github.com/pauseproxy/pauseproxy/internal/metrics"
	"github.com/pauseproxy/pauseproxy/internal/proxy"
	"github.com/pauseproxy/pauseproxy/internal/registry"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// App wires the running pieces together for signals, the admin console and
// the HTTP endpoints.
type App struct {
	log      *slog.Logger
	level    *slog.LevelVar
	router   *router.Router
	proxy    *proxy.Server
	load     func() (*config.Config, error)
	draining atomic.Bool

	// cfgMu serializes configuration changes (SIGHUP, RELOAD, SET), so
	// that the login phase and the router never get them in different
	// orders, and SET's read-modify-write sees the latest.
	cfgMu sync.Mutex

	events   *admin.Events
	pauser   *admin.Pauser
	failover *failover.Manager // role-change engines, one per database
	console  *admin.Console
	// registrar keeps this instance registered in Consul while
	// consul_register says so; serve starts it once listening.
	registrar *registry.Registrar
	// sigs is serve's signal channel; SHUTDOWN from the console feeds it
	// the signal that does the same.
	sigs chan os.Signal

	// ctx ends when serve returns (close); the goroutines of signal
	// PAUSEs and SHUTDOWN WAIT_FOR_SERVERS are counted in wg.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	_ proxy.AdminConsole = (*admin.Console)(nil)
	_ admin.Control      = (*App)(nil)
)

func newApp(log *slog.Logger, level *slog.LevelVar, r *router.Router, load func() (*config.Config, error)) *App {
	a := &App{log: log, level: level, router: r, load: load, sigs: make(chan os.Signal, 4)}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.events = admin.NewEvents(0)
	a.pauser = admin.NewPauser(r, a.events, log)
	a.failover = failover.NewManager(r, log, a.roleChanged)
	a.registrar = registry.New(log, appVersion())
	return a
}

// roleChanged records a finished role-change cycle in the event log.
func (a *App) roleChanged(ev failover.Event) {
	detail := ev.Reason
	if ev.From != ev.To {
		detail = fmt.Sprintf("%s -> %s (%s)", orNone(ev.From), orNone(ev.To), ev.Reason)
	}
	reason := router.HoldRoleChange
	if ev.Planned {
		reason = admin.HoldSwitchover
	}
	a.events.Add(admin.Event{
		Time: time.Now(), Kind: admin.EventRoleChange, Database: ev.Database, Reason: reason,
		Duration: ev.Held, Outcome: ev.Outcome, Detail: detail, From: ev.From, To: ev.To,
	})
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// close stops what the App started. Pauses in force stay (the process is
// ending anyway).
func (a *App) close() {
	a.registrar.Close()
	a.failover.Close()
	a.cancel()
	a.wg.Wait()
	a.pauser.Close()
}

// adminConsole returns the admin console.
func (a *App) adminConsole() proxy.AdminConsole {
	if a.console == nil {
		a.console = admin.New(admin.Options{
			Router:   a.router,
			Pauser:   a.pauser,
			Events:   a.events,
			Control:  a,
			Topology: a.failover,
			Clients:  a.clients,
			Version:  appVersion(),
			Log:      a.log,
			// SWITCHOVER runs the ops pipeline in this process (ops.go).
			Switchover: appSwitchover{a},
		})
	}
	return a.console
}

// clients counts connected clients; the proxy is set before it serves.
func (a *App) clients() int64 {
	if a.proxy == nil {
		return 0
	}
	return a.proxy.Clients()
}

// startHTTP starts the metrics and health endpoints when http_listen is
// set, and returns a function that stops them.
func (a *App) startHTTP(cfg *config.Config) (func(), error) {
	if cfg.Proxy.HTTPListen == "" {
		return func() {}, nil
	}
	mo := metrics.Options{
		Router: a.router, Pauser: a.pauser, Events: a.events, Clients: a.clients, Version: appVersion(),
		Discovery: discoveryStats{a.failover}, Topology: a.failover,
	}
	if a.console != nil {
		mo.Console = a.console
	}
	reg, err := metrics.NewRegistry(mo)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	h := admin.NewHTTPHandler(admin.HTTPOptions{
		Router:    a.router,
		Pauser:    a.pauser,
		Readiness: a.failover,
		Accepting: a.proxy.Accepting,
		Metrics:   promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Log:       a.log,
	})
	l, err := net.Listen("tcp", cfg.Proxy.HTTPListen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (http_listen): %w", cfg.Proxy.HTTPListen, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("HTTP server stopped", slog.Any("err", err))
		}
	}()
	a.log.Info("HTTP endpoints listening", slog.String("addr", l.Addr().String()))
	return func() {
		// A POST /pause may be waiting for transactions: give requests a
		// moment, then cut them.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}, nil
}

// signalPause is SIGUSR1: pause every database (PgBouncer's PAUSE), with
// drain_timeout and pause_timeout_action as configured. It returns at once;
// the outcome is logged.
func (a *App) signalPause() {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		// The Pauser logs the outcome.
		a.pauser.Pause(a.ctx, admin.PauseOptions{By: "SIGUSR1"})
	}()
}

// signalResume is SIGUSR2: resume every database.
func (a *App) signalResume() {
	a.pauser.Resume("", "SIGUSR2")
}

// Set is the console's SET: one [proxy] setting changed in memory, applied
// as a reload applies a file. The next reload from the file replaces it.
func (a *App) Set(key, value string) error {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	cfg, err := config.WithSetting(a.router.Config(), key, value)
	if err != nil {
		return err
	}
	if err := a.apply(cfg); err != nil {
		return err
	}
	a.log.Info("setting changed", slog.String("key", key), slog.String("value", value))
	return nil
}

// Shutdown is the console's SHUTDOWN. It turns the request into the signal
// that does the same, so that serve stops the one way it knows.
func (a *App) Shutdown(mode string) error {
	switch mode {
	case "":
		return a.signal(syscall.SIGINT)
	case admin.ShutdownWaitForClients:
		return a.signal(syscall.SIGTERM)
	case admin.ShutdownWaitForServers:
		// PgBouncer: stop accepting, PAUSE, then exit.
		a.proxy.StopAccepting()
		timeout := a.router.Config().Proxy.ShutdownTimeout
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.pauser.Pause(a.ctx, admin.PauseOptions{By: "SHUTDOWN WAIT_FOR_SERVERS", Timeout: timeout})
			a.signal(syscall.SIGINT)
		}()
		return nil
	}
	return fmt.Errorf("unknown shutdown mode %q", mode)
}

// signal hands sig to serve's loop without blocking.
func (a *App) signal(sig os.Signal) error {
	select {
	case a.sigs <- sig:
		return nil
	default:
		return errors.New("a shutdown is already under way")
	}
}

// discoveryStats reports the role-change engines' view of discovery for the
// metrics.
type discoveryStats struct{ m *failover.Manager }

func (d discoveryStats) DiscoveryStats() []metrics.DiscoveryStats {
	var out []metrics.DiscoveryStats
	for name, st := range d.m.Statuses() {
		ds := metrics.DiscoveryStats{Database: name, Errors: st.SourceErrors, Retries: st.VerifyFailures, SplitBrain: st.SplitBrain}
		if st.Snapshot != nil {
			ds.LastSuccess = st.Snapshot.Updated
		}
		out = append(out, ds)
	}
	return out
}
