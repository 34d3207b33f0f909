package proxytest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/admin"
	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/failover"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxy"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// Placeholders that Start and Reload replace in a TOML body.
const (
	PortVar    = "{{port}}"     // the listen port Start chose
	DirVar     = "{{dir}}"      // the test's directory holding the config and files
	SockDirVar = "{{sock_dir}}" // the unix socket directory (WithSockDir)
)

// Proxy is an in-process pauseproxy serving until the test ends.
type Proxy struct {
	Addr    string // 127.0.0.1:Port
	Port    int
	Dir     string         // holds the config file and the files of WithFile
	SockDir string         // "" without WithSockDir
	Path    string         // the config file
	Cfg     *config.Config // as Start loaded it
	Log     *slog.Logger
	Router  *router.Router
	Server  *proxy.Server
	Manager *failover.Manager // nil without WithFailover

	// The admin console and its parts; nil without WithAdmin.
	Pauser  *admin.Pauser
	Events  *admin.Events
	Console *admin.Console

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Option changes what Start builds.
type Option func(*options)

type options struct {
	log      *slog.Logger
	sockDir  bool
	files    map[string]string
	failover bool
	onEvent  func(failover.Event)
	admin    *AdminOptions
}

// WithLog logs to log instead of the test's log (benchmarks discard it).
func WithLog(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// WithSockDir creates a directory for the unix socket; the TOML names it
// with SockDirVar.
func WithSockDir() Option { return func(o *options) { o.sockDir = true } }

// WithFile writes a file (an auth_file, say) into the test's directory
// before the config is loaded; the TOML names it DirVar + "/" + name.
func WithFile(name, body string) Option {
	return func(o *options) {
		if o.files == nil {
			o.files = map[string]string{}
		}
		o.files[name] = body
	}
}

// WithFailover runs a failover.Manager over the router, as the command
// does, synced with every configuration; onEvent may be nil.
func WithFailover(onEvent func(failover.Event)) Option {
	return func(o *options) { o.failover, o.onEvent = true, onEvent }
}

// AdminOptions are the caller's parts of the admin console; Start supplies
// the router, a Pauser, an Events log, the client count and the logger.
type AdminOptions struct {
	// Control is called once, before the proxy serves, with the Proxy
	// whose Server is set by the time a console command runs; nil
	// refuses RELOAD, SET and SHUTDOWN.
	Control     func(p *Proxy) admin.Control
	Topology    admin.Topology
	Switchover  admin.Switchover
	StatsPeriod time.Duration
}

// WithAdmin serves the admin console with o.
func WithAdmin(o AdminOptions) Option { return func(opts *options) { opts.admin = &o } }

// Start writes tomlBody, with the placeholders replaced, to a config file
// in a temporary directory, loads it through config.Load (as the command
// does) and serves it until the test ends. The listen port is a free one
// (pgtest.FreePort); the body says listen_port = {{port}}.
func Start(t testing.TB, tomlBody string, opts ...Option) *Proxy {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &Proxy{
		Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port, Dir: dir,
		Path: filepath.Join(dir, "pauseproxy.toml"), Log: Log(t), done: make(chan struct{}),
	}
	if o.sockDir {
		p.SockDir = filepath.Join(dir, "sock")
		if err := os.Mkdir(p.SockDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range o.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if o.log != nil {
		p.Log = o.log
	}
	p.Cfg = p.load(t, tomlBody)
	p.Router = router.New(p.Cfg, p.Log)
	if o.failover {
		p.Manager = failover.NewManager(p.Router, p.Log, o.onEvent)
		p.Manager.Sync(p.Cfg)
	}
	var console proxy.AdminConsole
	if a := o.admin; a != nil {
		p.Events = admin.NewEvents(0)
		p.Pauser = admin.NewPauser(p.Router, p.Events, p.Log)
		var control admin.Control
		if a.Control != nil {
			control = a.Control(p)
		}
		p.Console = admin.New(admin.Options{
			Router: p.Router, Pauser: p.Pauser, Events: p.Events, Control: control, Version: "test",
			Topology: a.Topology, Switchover: a.Switchover,
			StatsPeriod: a.StatsPeriod, Log: p.Log,
			Clients: func() int64 { return p.Server.Clients() },
		})
		console = p.Console
	}
	srv, err := proxy.New(p.Cfg, p.Router, console, p.Log)
	if err != nil {
		p.closeParts()
		t.Fatal(err)
	}
	p.Server = srv
	if err := srv.Listen(); err != nil {
		p.closeParts()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go p.serve(ctx)
	t.Cleanup(p.Stop)
	return p
}

func (p *Proxy) serve(ctx context.Context) {
	p.Server.Serve(ctx)
	p.Server.Wait()
	close(p.done)
}

// load writes body, with the placeholders replaced, to p.Path and loads it.
func (p *Proxy) load(t testing.TB, body string) *config.Config {
	t.Helper()
	body = strings.NewReplacer(
		PortVar, strconv.Itoa(p.Port), DirVar, p.Dir, SockDirVar, p.SockDir,
	).Replace(body)
	if err := os.WriteFile(p.Path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p.Path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, body)
	}
	return cfg
}

// Reload writes a new configuration (placeholders as in Start) and applies
// it as the command's SIGHUP does.
func (p *Proxy) Reload(t testing.TB, tomlBody string) {
	t.Helper()
	if err := p.Apply(p.load(t, tomlBody)); err != nil {
		t.Fatal(err)
	}
}

// Apply applies cfg to the server, the router and the failover manager,
// in the command's order.
func (p *Proxy) Apply(cfg *config.Config) error {
	if err := p.Server.Reload(cfg); err != nil {
		return err
	}
	p.Router.Reload(cfg)
	if p.Manager != nil {
		p.Manager.Sync(cfg)
	}
	return nil
}

// Stop closes every client, the engines and the pools. Safe to call twice.
func (p *Proxy) Stop() {
	p.once.Do(func() {
		p.cancel()
		<-p.done
		p.closeParts()
	})
}

// closeParts closes what Start built besides the server, in reverse order.
func (p *Proxy) closeParts() {
	if p.Pauser != nil {
		p.Pauser.Close()
	}
	if p.Manager != nil {
		p.Manager.Close()
	}
	p.Router.Close()
}
