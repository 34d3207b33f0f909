package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// The commands that change something. They need admin_users (SET of a
// faked client parameter aside). Messages follow PgBouncer's where it has
// one ("no such database: x", "admin access needed"); SQLSTATEs say what
// went wrong, since PgBouncer's 08P01 for everything cannot be matched on.

// isAdminDB reports whether name is the console's own database.
func isAdminDB(name string) bool { return name == "pgbouncer" || name == "pauseproxy" }

// optionalDB takes an optional database name from args: the first token,
// unless it is one of the bare keywords that may follow it.
func optionalDB(args []token, keywords ...string) (string, []token) {
	if len(args) == 0 || args[0].quote == '\'' {
		return "", args
	}
	for _, kw := range keywords {
		if args[0].is(kw) {
			return "", args
		}
	}
	return args[0].text, args[1:]
}

// database returns the database called name, creating it from the "*"
// entry as a client connecting to it would (PgBouncer's
// find_or_register_database).
func (c *Console) database(name, verb string) (*router.Database, error) {
	if isAdminDB(name) {
		return nil, errorf("55000", "cannot %s admin db: %s", strings.ToLower(verb), name)
	}
	d, ok := c.o.Router.Database(name)
	if !ok {
		return nil, errorf("3D000", "no such database: %s", name)
	}
	return d, nil
}

// targets returns the named database, or every database when name is "".
func (c *Console) targets(name, verb string) ([]*router.Database, error) {
	if name == "" {
		return c.databases(), nil
	}
	d, err := c.database(name, verb)
	if err != nil {
		return nil, err
	}
	return []*router.Database{d}, nil
}

// parseDuration reads a duration option: a Go duration ("5s", "1m30s") or
// a number of seconds, as PgBouncer's settings are.
func parseDuration(t token) (time.Duration, error) {
	if d, err := time.ParseDuration(t.text); err == nil && d >= 0 {
		return d, nil
	}
	if f, err := strconv.ParseFloat(t.text, 64); err == nil && f >= 0 && f < 1e9 {
		return time.Duration(f * float64(time.Second)), nil
	}
	return 0, errorf("22023", "invalid duration %q: want like '5s', '1m30s' or a number of seconds", t.text)
}

// pause is PAUSE [db] [TIMEOUT 'duration'] [EXPIRE 'duration'].
func (c *Console) pause(ctx context.Context, cc *consoleConn, args []token, r *reply) error {
	o := PauseOptions{By: "console " + cc.user}
	o.Database, args = optionalDB(args, "TIMEOUT", "EXPIRE")
	for len(args) > 0 {
		if len(args) < 2 {
			return errSyntax
		}
		d, err := parseDuration(args[1])
		if err != nil {
			return err
		}
		switch {
		case args[0].is("TIMEOUT") && d > 0:
			o.Timeout = d
		case args[0].is("EXPIRE") && d > 0:
			o.Expire = d
		default:
			return errSyntax
		}
		args = args[2:]
	}
	if isAdminDB(o.Database) {
		return errorf("55000", "cannot pause admin db: %s", o.Database)
	}
	res, err := c.o.Pauser.Pause(ctx, o)
	if err != nil {
		return err
	}
	if res.Cancelled > 0 || res.Closed > 0 {
		r.notice(fmt.Sprintf("PAUSE timed out: %d cancel requests sent, %d server connections closed", res.Cancelled, res.Closed),
			"pause_timeout_action = cancel: the clients got an error for their transaction and stay connected")
	}
	r.complete("PAUSE")
	return nil
}

// resume is RESUME [db]. Resuming what is not paused only says so: RESUME
// is idempotent, so that a runbook may always run it.
func (c *Console) resume(_ context.Context, cc *consoleConn, args []token, r *reply) error {
	db, rest := optionalDB(args)
	if len(rest) > 0 {
		return errSyntax
	}
	if isAdminDB(db) {
		return errorf("55000", "cannot resume admin db: %s", db)
	}
	was, err := c.o.Pauser.Resume(db, "console "+cc.user)
	if err != nil {
		return err
	}
	if !was {
		if db == "" {
			r.notice("nothing is paused", "")
		} else {
			r.notice(fmt.Sprintf("database %s is not paused", db), "")
		}
	}
	r.complete("RESUME")
	return nil
}

// reconnect is RECONNECT [db]: server connections are closed when next
// released, new ones dialed as needed.
func (c *Console) reconnect(_ context.Context, cc *consoleConn, args []token, r *reply) error {
	db, rest := optionalDB(args)
	if len(rest) > 0 {
		return errSyntax
	}
	dbs, err := c.targets(db, "RECONNECT")
	if err != nil {
		return err
	}
	for _, d := range dbs {
		d.Reconnect()
	}
	c.record(cc, "RECONNECT", db, nil)
	r.complete("RECONNECT")
	return nil
}

// kill is KILL [db]: the database is paused (RESUME lets new transactions
// through again, as in PgBouncer), its clients are disconnected with
// 57P01 and its server connections closed.
func (c *Console) kill(_ context.Context, cc *consoleConn, args []token, r *reply) error {
	db, rest := optionalDB(args)
	if len(rest) > 0 {
		return errSyntax
	}
	dbs, err := c.targets(db, "KILL")
	if err != nil {
		return err
	}
	if err := c.o.Pauser.Hold(db, "console "+cc.user); err != nil {
		return err
	}
	n := 0
	for _, d := range dbs {
		for _, s := range c.o.Router.SessionsOf(d.Name) {
			s.Kill(fmt.Sprintf("pauseproxy: connection killed by admin (KILL %s)", d.Name))
			n++
		}
		for _, p := range d.Pools() {
			p.CloseIdle()
		}
	}
	c.record(cc, "KILL", db, nil)
	r.notice(fmt.Sprintf("%d clients disconnected; the database stays paused until RESUME", n), "")
	r.complete("KILL")
	return nil
}

// killClient is KILL_CLIENT id (the id column of SHOW CLIENTS).
func (c *Console) killClient(_ context.Context, cc *consoleConn, args []token, r *reply) error {
	if len(args) != 1 {
		return errSyntax
	}
	id, err := strconv.ParseUint(args[0].text, 10, 64)
	if err != nil {
		return errorf("22023", "invalid client id %q: want the id column of SHOW CLIENTS", args[0].text)
	}
	for _, s := range c.o.Router.Sessions() {
		if s.ID == id {
			s.Kill("pauseproxy: connection killed by admin (KILL_CLIENT)")
			c.record(cc, "KILL_CLIENT "+args[0].text, s.DBName, nil)
			r.complete("KILL_CLIENT")
			return nil
		}
	}
	return errorf("42704", "no such client: %d", id)
}

// disable is DISABLE db: new clients are refused, connected ones stay.
func (c *Console) disable(_ context.Context, cc *consoleConn, args []token, r *reply) error {
	if len(args) == 0 {
		return errorf("42601", "a database is required")
	}
	if len(args) > 1 {
		return errSyntax
	}
	d, err := c.database(args[0].text, "DISABLE")
	if err != nil {
		return err
	}
	d.Disable()
	c.record(cc, "DISABLE", d.Name, nil)
	r.complete("DISABLE")
	return nil
}

// enable is ENABLE db.
func (c *Console) enable(_ context.Context, cc *consoleConn, args []token, r *reply) error {
	if len(args) == 0 {
		return errorf("42601", "a database is required")
	}
	if len(args) > 1 {
		return errSyntax
	}
	d, err := c.database(args[0].text, "ENABLE")
	if err != nil {
		return err
	}
	d.Enable()
	c.record(cc, "ENABLE", d.Name, nil)
	r.complete("ENABLE")
	return nil
}

// waitClose is WAIT_CLOSE [db]: it returns once no server connection of
// the database(s) is waiting to be closed (after RECONNECT or a reload
// that moved the target). Unlike PgBouncer's, it gives up after
// drain_timeout.
func (c *Console) waitClose(ctx context.Context, _ *consoleConn, args []token, r *reply) error {
	db, rest := optionalDB(args)
	if len(rest) > 0 {
		return errSyntax
	}
	dbs, err := c.targets(db, "WAIT_CLOSE")
	if err != nil {
		return err
	}
	limit := c.o.Router.Config().Proxy.DrainTimeout
	deadline := time.Now().Add(limit)
	for {
		n := 0
		for _, d := range dbs {
			for _, p := range d.Pools() {
				for _, ci := range p.Conns() {
					if ci.CloseNeeded {
						n++
					}
				}
			}
		}
		if n == 0 {
			r.complete("WAIT_CLOSE")
			return nil
		}
		if time.Now().After(deadline) {
			return errorf("57014", "WAIT_CLOSE timed out after %s (drain_timeout): %d server connections still to close", limit, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// reload is RELOAD: the configuration file is read again; a file that does
// not validate is refused and the running configuration stays.
func (c *Console) reload(_ context.Context, cc *consoleConn, args []token, r *reply) error {
	if len(args) > 0 {
		return errSyntax
	}
	if c.o.Control == nil {
		return errorf("0A000", "RELOAD is not available in this process")
	}
	err := c.o.Control.Reload()
	c.record(cc, "RELOAD", "", err)
	if err != nil {
		return errorf("F0000", "%v", err) // config_file_error
	}
	r.complete("RELOAD")
	return nil
}

// clientOnlyParams are parameters drivers SET on connecting; like
// fakeParams, the console accepts and ignores them.
var clientOnlyParams = map[string]bool{"application_name": true, "extra_float_digits": true}

// set is SET key = value (or TO value): a [proxy] setting changed in
// memory until the next reload, as in PgBouncer.
func (c *Console) set(_ context.Context, cc *consoleConn, args []token, r *reply) error {
	if len(args) != 3 || args[0].quote == '\'' || !(args[1].text == "=" && args[1].quote == 0 || args[1].is("TO")) {
		return errSyntax
	}
	key, value := strings.ToLower(args[0].text), args[2].text
	if _, ok := fakeParams[key]; ok || clientOnlyParams[key] {
		r.notice("SET ignored", "")
		r.complete("SET")
		return nil
	}
	if c.accessOf(cc.user) != adminAccess {
		return errAdminNeeded
	}
	if c.o.Control == nil {
		return errorf("0A000", "SET is not available in this process")
	}
	err := c.o.Control.Set(key, value)
	c.record(cc, "SET "+key, "", err)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return errorf("22023", "SET failed: %s", strings.Join(ce.Problems, "; "))
		}
		return errorf("22023", "SET failed: %v", err)
	}
	r.complete("SET " + key + "=" + value)
	return nil
}

// shutdown is SHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS].
func (c *Console) shutdown(_ context.Context, cc *consoleConn, args []token, r *reply) error {
	mode := ""
	switch {
	case len(args) == 0:
	case len(args) == 1 && args[0].is(ShutdownWaitForServers):
		mode = ShutdownWaitForServers
	case len(args) == 1 && args[0].is(ShutdownWaitForClients):
		mode = ShutdownWaitForClients
	default:
		return errSyntax
	}
	if c.o.Control == nil {
		return errorf("0A000", "SHUTDOWN is not available in this process")
	}
	r.complete("SHUTDOWN")
	// Answer first: an immediate shutdown closes this connection too.
	r.after = append(r.after, func() {
		err := c.o.Control.Shutdown(mode)
		c.record(cc, strings.TrimSpace("SHUTDOWN "+mode), "", err)
	})
	return nil
}

// suspend is PgBouncer's SUSPEND, which exists for its online restart.
func (c *Console) suspend(context.Context, *consoleConn, []token, *reply) error {
	return errorf("0A000", "SUSPEND is not supported by pauseproxy (it exists for PgBouncer's online restart); use PAUSE to hold traffic")
}

// switchover is SWITCHOVER [db] [TO member].
func (c *Console) switchover(ctx context.Context, cc *consoleConn, args []token, r *reply) error {
	db, rest := optionalDB(args, "TO")
	member := ""
	switch {
	case len(rest) == 0:
	case len(rest) == 2 && rest[0].is("TO"):
		member = rest[1].text
	default:
		return errSyntax
	}
	if db == "" {
		dbs := c.databases()
		if len(dbs) != 1 {
			return errorf("42601", "SWITCHOVER needs a database name: %d databases are configured", len(dbs))
		}
		db = dbs[0].Name
	}
	if _, err := c.database(db, "SWITCHOVER"); err != nil {
		return err
	}
	if c.o.Switchover == nil {
		return errorf("0A000", "SWITCHOVER is not available: no role-change engine is running for %s", db)
	}
	start := time.Now()
	summary, err := c.o.Switchover.Switchover(ctx, db, member)
	outcome := "ok"
	if err != nil {
		outcome = "error: " + err.Error()
	}
	c.o.Events.Add(Event{Kind: EventSwitchover, Database: db, Duration: time.Since(start), Outcome: outcome, Detail: summary + " (by " + cc.user + ")"})
	if err != nil {
		return errorf("55000", "SWITCHOVER %s failed: %v", db, err)
	}
	if summary != "" {
		r.notice(summary, "")
	}
	r.complete("SWITCHOVER")
	return nil
}
