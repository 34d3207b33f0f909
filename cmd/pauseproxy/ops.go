package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sort"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/admin"
	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/ops"
)

// The operator commands: switchover, exec and ctl (internal/ops does the
// work; docs/operations.md describes them).

// defaultConfigPath is where the commands look without --config: the
// PAUSEPROXY_CONFIG environment variable, else the systemd unit's path.
func defaultConfigPath() string {
	if p := os.Getenv("PAUSEPROXY_CONFIG"); p != "" {
		return p
	}
	return "/etc/pauseproxy/pauseproxy.toml"
}

// opsFlags are the flags switchover and exec share.
type opsFlags struct {
	config, database string
	timeout, drain   time.Duration
}

func (f *opsFlags) register(fs *flag.FlagSet, timeout time.Duration) {
	fs.StringVar(&f.config, "config", defaultConfigPath(), "the local proxy's TOML configuration")
	fs.StringVar(&f.database, "database", "", "the database (may be left out when the config has one)")
	fs.DurationVar(&f.timeout, "timeout", timeout, "bound on the whole command; traffic resumes when it passes")
	fs.DurationVar(&f.drain, "drain-timeout", 0, "bound on each proxy's wait for transactions in flight (default: drain_timeout)")
}

// options loads the config and returns the pipeline options, logging to
// stderr.
func (f *opsFlags) options(stderr io.Writer) (ops.Options, error) {
	cfg, err := loadAny(f.config)
	if err != nil {
		return ops.Options{}, err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return ops.Options{Config: cfg, Database: f.database, Timeout: f.timeout, DrainTimeout: f.drain, Log: log}, nil
}

// signalContext ends on SIGINT or SIGTERM: the pipeline then undoes what it
// did (resumes the proxies) and exits.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func switchoverCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("switchover", stderr)
	var f opsFlags
	f.register(fs, ops.DefaultSwitchoverTimeout)
	candidate := fs.String("candidate", "", "the member to hand the primary to (default: Patroni chooses)")
	maxLag := fs.Int64("max-lag", ops.DefaultMaxLag, "most replication lag in bytes the candidate may have")
	if code, done := parseArgs(fs, "pauseproxy switchover [flags]: move the primary to a replica with traffic held (Patroni or Consul discovery)", args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pauseproxy switchover: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	o, err := f.options(stderr)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	ctx, stop := signalContext()
	defer stop()
	rep, err := ops.Switchover(ctx, ops.SwitchoverOptions{Options: o, Candidate: *candidate, MaxLag: *maxLag})
	if rep != nil {
		fmt.Fprintln(stdout, rep.Summary())
	}
	if err != nil {
		fmt.Fprintf(stderr, "pauseproxy switchover failed: %v\n", err)
		return 1
	}
	return 0
}

// execSynopsis is exec's usage line. "help" as the first argument asks
// for it; `pauseproxy exec -- help` runs a command named help.
const execSynopsis = "pauseproxy exec [flags] -- COMMAND [ARG...]: run a maintenance command with traffic held; exit with its status"

func execCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("exec", stderr)
	var f opsFlags
	f.register(fs, ops.DefaultExecTimeout)
	if code, done := parseArgs(fs, execSynopsis, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(stderr, "usage: %s\n", execSynopsis)
		return 2
	}
	o, err := f.options(stderr)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	ctx, stop := signalContext()
	defer stop()
	rep, err := ops.Exec(ctx, ops.ExecOptions{Options: o, Command: fs.Args(), Stdin: os.Stdin, Stdout: stdout, Stderr: stderr})
	if rep != nil {
		// stdout is the command's.
		fmt.Fprintln(stderr, "pauseproxy exec:", rep.Summary())
	}
	switch {
	case rep != nil && rep.ExitCode != 0:
		fmt.Fprintf(stderr, "pauseproxy exec: %v\n", err)
		return rep.ExitCode
	case err != nil:
		fmt.Fprintf(stderr, "pauseproxy exec failed: %v\n", err)
		return 1
	}
	return 0
}

func ctlCmd(args []string, stdout, stderr io.Writer) int {
	const synopsis = "pauseproxy ctl pause|resume|status [--config FILE] [--database NAME] [--all] [--timeout DUR] [--expire DUR]"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprintf(stdout, "usage: %s\n(pauseproxy ctl ACTION --help lists the flags)\n", synopsis)
		return 0
	}
	if len(args) == 0 || !slices.Contains([]string{"pause", "resume", "status"}, args[0]) {
		fmt.Fprintf(stderr, "usage: %s\n", synopsis)
		return 2
	}
	action := args[0]
	fs := newFlagSet("ctl "+action, stderr)
	path := fs.String("config", defaultConfigPath(), "the local proxy's TOML configuration")
	db := fs.String("database", "", "the database (default: every database)")
	all := fs.Bool("all", false, "the other proxies too: peers, and with consul_register those registered in Consul (pause: all or nothing)")
	timeout := fs.Duration("timeout", 0, "pause: bound on the wait for transactions in flight (default: the proxy's drain_timeout)")
	expire := fs.Duration("expire", 0, "pause: resume by itself this long after (default: never)")
	if code, done := parseArgs(fs, "pauseproxy ctl "+action+" [flags]", args[1:], stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pauseproxy ctl: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := loadAny(*path)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	ctx, stop := signalContext()
	defer stop()
	switch action {
	case "status":
		return ctlStatus(ctx, cfg, *db, *all, stdout, stderr)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	proxies, err := ops.Consoles(ctx, cfg, *all, *db, log)
	if err != nil {
		fmt.Fprintf(stderr, "pauseproxy ctl: %v\n", err)
		return 1
	}
	if *all {
		log.Info("proxies to "+action, slog.Int("count", len(proxies)), slog.String("proxies", ops.Describe(proxies)))
	}
	defer func() {
		for _, p := range proxies {
			p.Close()
		}
	}()
	scope := *db
	if scope == "" {
		scope = "every database"
	}
	if action == "pause" {
		if err := ops.PauseAll(ctx, proxies, *db, *timeout, *expire); err != nil {
			fmt.Fprintf(stderr, "pauseproxy ctl pause: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "paused %s on %d proxies\n", scope, len(proxies))
		return 0
	}
	if err := ops.ResumeAll(ctx, proxies, *db); err != nil {
		fmt.Fprintf(stderr, "pauseproxy ctl resume: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "resumed %s on %d proxies\n", scope, len(proxies))
	return 0
}

// ctlStatus prints, per proxy and database: paused, the primary discovery
// names, the primary verified writable. Exit 1 when a proxy does not
// answer.
func ctlStatus(ctx context.Context, cfg *config.Config, db string, all bool, stdout, stderr io.Writer) int {
	local, err := ops.LocalConsole(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "pauseproxy ctl: %v\n", err)
		return 1
	}
	consoles := []*ops.Console{local}
	if all {
		peers, err := ops.PeerConsoles(ctx, cfg, db, nil)
		if err != nil {
			fmt.Fprintf(stderr, "pauseproxy ctl: %v\n", err)
			return 1
		}
		consoles = append(consoles, peers...)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "proxy\tdatabase\tpaused\tprimary\tverified")
	code := 0
	for _, c := range consoles {
		states, err := c.States(ctx)
		c.Close()
		if err != nil {
			fmt.Fprintf(tw, "%s\t-\terror: %v\t\t\n", c.Name(), err)
			code = 1
			continue
		}
		names := make([]string, 0, len(states))
		for n := range states {
			if db == "" || n == db {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		if len(names) == 0 && db != "" {
			fmt.Fprintf(tw, "%s\t%s\terror: no such database\t\t\n", c.Name(), db)
			code = 1
		}
		for _, n := range names {
			st := states[n]
			paused := "no"
			if st.Paused {
				paused = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name(), n, paused, dash(st.Primary), dash(st.Verified))
		}
	}
	tw.Flush()
	return code
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// appSwitchover is the admin console's SWITCHOVER: the same pipeline as
// `pauseproxy switchover`, run in this process, which it pauses directly;
// its peers are paused through their consoles.
type appSwitchover struct{ a *App }

var _ admin.Switchover = appSwitchover{}

// Switchover implements admin.Switchover.
func (s appSwitchover) Switchover(ctx context.Context, db, member string) (string, error) {
	cfg := s.a.router.Config()
	proxies := []ops.Proxy{localProxy{s.a}}
	peers, err := ops.PeerConsoles(ctx, cfg, db, s.a.log)
	if err != nil {
		return "", err
	}
	for _, p := range peers {
		proxies = append(proxies, p)
	}
	rep, err := ops.Switchover(ctx, ops.SwitchoverOptions{
		Options:   ops.Options{Config: cfg, Database: db, Proxies: proxies, Log: s.a.log},
		Candidate: member,
	})
	return rep.Summary(), err
}

// localProxy is this process as an ops.Proxy.
type localProxy struct{ a *App }

func (l localProxy) Name() string { return "local" }

func (l localProxy) From() string { return "this proxy" }

func (l localProxy) Pause(ctx context.Context, db string, timeout, expire time.Duration) error {
	_, err := l.a.pauser.Pause(ctx, admin.PauseOptions{Database: db, Timeout: timeout, Expire: expire, By: "switchover"})
	return err
}

func (l localProxy) Resume(_ context.Context, db string) error {
	_, err := l.a.pauser.Resume(db, "switchover")
	return err
}

func (l localProxy) Reconnect(_ context.Context, db string) error {
	d, ok := l.a.router.Database(db)
	if !ok {
		return fmt.Errorf("no such database: %s", db)
	}
	d.Reconnect()
	return nil
}

func (l localProxy) State(_ context.Context, db string) (ops.State, error) {
	d, ok := l.a.router.Database(db)
	if !ok {
		return ops.State{}, fmt.Errorf("no such database: %s", db)
	}
	_, reasons := d.Held()
	st := ops.State{Paused: slices.Contains(reasons, admin.PauseReason)}
	snap, verified, _, ok := l.a.failover.Topology(db)
	if !ok {
		return st, errors.New("no role-change engine runs for " + db)
	}
	st.Verified = verified
	if snap != nil && snap.Primary != nil {
		st.Primary = snap.Primary.Addr()
	}
	return st, nil
}

func (l localProxy) Close() error { return nil }
