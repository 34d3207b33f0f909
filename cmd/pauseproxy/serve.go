package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/proxy"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// serve runs the proxy until SIGTERM (drain, then exit 0) or SIGINT (close
// at once). SIGHUP reloads the configuration. As root it refuses unless
// allowRoot (--allow-root) or allow_root says otherwise.
func serve(load func() (*config.Config, error), allowRoot bool, stderr io.Writer) int {
	cfg, err := load()
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	if err := checkRoot(geteuid(), allowRoot, cfg); err != nil {
		fmt.Fprintln(stderr, "pauseproxy:", err)
		return 1
	}
	level := new(slog.LevelVar)
	setLevel(level, cfg.Proxy.LogLevel)
	log := newLogger(stderr, cfg.Proxy.LogFormat, level)
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}

	r := router.New(cfg, log)
	defer r.Close()
	app := newApp(log, level, r, load)
	defer app.close()
	// Engines start before the listeners: each managed database is held
	// until its first primary is verified.
	app.failover.Sync(cfg)
	srv, err := proxy.New(cfg, r, app.adminConsole(), log)
	if err != nil {
		log.Error("cannot start", slog.Any("err", err))
		return 1
	}
	app.proxy = srv
	if err := srv.Listen(); err != nil {
		log.Error("cannot start", slog.Any("err", err))
		return 1
	}
	stopHTTP, err := app.startHTTP(cfg)
	if err != nil {
		log.Error("cannot start", slog.Any("err", err))
		return 1
	}
	defer stopHTTP()

	// hard is cancelled to close every client at once.
	hard, cancelHard := context.WithCancel(context.Background())
	defer cancelHard()
	served := make(chan struct{})
	go func() {
		srv.Serve(hard)
		close(served)
	}()
	addrs := srv.Addrs()
	log.Info("pauseproxy started", slog.String("version", appVersion()), slog.Any("listen", addrs), slog.Int("databases", len(cfg.Databases)))
	// Listening now: the other instances' commands may find and pause
	// this one (consul_register).
	app.registrar.Update(cfg)

	sigs := app.sigs
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	for sig := range sigs {
		switch sig {
		case syscall.SIGHUP:
			app.Reload()
		case syscall.SIGUSR1:
			app.signalPause()
		case syscall.SIGUSR2:
			app.signalResume()
		case syscall.SIGINT:
			log.Info("SIGINT: closing every connection now")
			app.registrar.Close()
			srv.StopAccepting()
			cancelHard()
			<-served
			srv.Wait()
			return 0
		case syscall.SIGTERM:
			return app.drain(srv, sigs, cancelHard, served)
		}
	}
	return 0
}

// drain is SIGTERM: stop accepting, let transactions in flight finish
// (bounded by shutdown_timeout), then close. A second SIGTERM or a SIGINT
// ends at once.
func (a *App) drain(srv *proxy.Server, sigs <-chan os.Signal, cancelHard context.CancelFunc, served <-chan struct{}) int {
	cfg := a.router.Config()
	a.log.Info("SIGTERM: draining", slog.Duration("shutdown_timeout", cfg.Proxy.ShutdownTimeout))
	a.draining.Store(true)
	// Leaving: the other instances' commands stop counting on this one,
	// whose admin console closes with its listeners.
	a.registrar.Close()
	srv.StopAccepting()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Proxy.ShutdownTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.router.Drain(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			a.log.Warn("shutdown_timeout reached with transactions still running; closing them")
		}
	case sig := <-sigs:
		a.log.Info("second signal: closing every connection now", slog.String("signal", sig.String()))
	}
	cancelHard()
	<-served
	srv.Wait()
	a.log.Info("pauseproxy stopped")
	return 0
}

// newLogger returns the serving process's logger: log_format's handler on
// w, at level.
func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == config.LogFormatJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// geteuid is os.Geteuid; tests replace it.
var geteuid = os.Geteuid

// checkRoot refuses to serve as root (uid 0) unless told to, as PgBouncer
// does: a process that faces the network and parses what any client sends
// should not hold root's rights, and one started as root by mistake would
// also leave root-owned sockets and files behind. It runs after the config
// is loaded, so that allow_root in the file counts.
func checkRoot(uid int, allowFlag bool, cfg *config.Config) error {
	if uid != 0 || allowFlag || cfg.Proxy.AllowRoot {
		return nil
	}
	section := "[proxy]"
	if strings.HasSuffix(cfg.File, ".ini") {
		section = "[pgbouncer]"
	}
	return fmt.Errorf("refusing to run as root: run pauseproxy as an unprivileged user (the systemd unit and the container image do), or override with --allow-root or allow_root = true in %s of %s", section, cfg.File)
}

func setLevel(v *slog.LevelVar, s string) {
	switch s {
	case "debug":
		v.Set(slog.LevelDebug)
	case "warn":
		v.Set(slog.LevelWarn)
	case "error":
		v.Set(slog.LevelError)
	default:
		v.Set(slog.LevelInfo)
	}
}

// Reload re-reads the configuration (SIGHUP, RELOAD). One that fails
// validation is refused with its problems and the old one keeps serving.
func (a *App) Reload() error {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	cfg, err := a.load()
	if err != nil {
		a.log.Error("reload refused; the running configuration stays", slog.String("problems", err.Error()))
		return fmt.Errorf("reload refused: %w", err)
	}
	if err := a.apply(cfg); err != nil {
		return err
	}
	a.log.Info("configuration reloaded", slog.Int("databases", len(cfg.Databases)))
	return nil
}

// apply puts a validated configuration in force: the login phase first,
// whose TLS files and auth_file may still fail to load, then the router.
func (a *App) apply(cfg *config.Config) error {
	old := a.router.Config()
	if err := a.proxy.Reload(cfg); err != nil {
		a.log.Error("reload refused; the running configuration stays", slog.Any("err", err))
		return fmt.Errorf("reload refused: %w", err)
	}
	a.router.Reload(cfg)
	a.failover.Sync(cfg)
	a.registrar.Update(cfg)
	setLevel(a.level, cfg.Proxy.LogLevel)
	for _, w := range cfg.Warnings {
		a.log.Warn(w)
	}
	if cfg.Proxy.LogFormat != old.Proxy.LogFormat {
		a.log.Warn("log_format changed: it takes effect at the next start", slog.String("running", old.Proxy.LogFormat), slog.String("file", cfg.Proxy.LogFormat))
	}
	return nil
}
