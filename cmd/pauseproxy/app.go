package main

import (
	"log/slog"
	"sync/atomic"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/proxy"
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
}

// adminConsole returns the admin console, or nil when none is built in.
func (a *App) adminConsole() proxy.AdminConsole { return nil }

// startHTTP starts the metrics and health endpoints when http_listen is
// set, and returns a function that stops them.
func (a *App) startHTTP(cfg *config.Config) (func(), error) { return func() {}, nil }

// signalPause is SIGUSR1: pause every database (PgBouncer's PAUSE).
func (a *App) signalPause() {
	for _, d := range a.router.Databases() {
		d.Hold("pause")
	}
	a.log.Info("SIGUSR1: paused all databases")
}

// signalResume is SIGUSR2: resume every database.
func (a *App) signalResume() {
	for _, d := range a.router.Databases() {
		d.Unhold("pause")
	}
	a.log.Info("SIGUSR2: resumed all databases")
}
