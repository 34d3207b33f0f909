package router

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/pool"
)

// HoldRoleChange is the hold reason of a role change.
const HoldRoleChange = "role-change"

// Manage hands the database to a role-change engine: from now on new
// server connections must be writable, trouble signals reach the engine
// (Trouble), and the database stays held until the engine has verified a
// primary and calls Unhold(HoldRoleChange).
func (d *Database) Manage() {
	d.managed.Store(true)
	d.Hold(HoldRoleChange)
}

// Unmanage takes the database back from a role-change engine (its target
// is no longer the primary, or a reload removed the engine): no
// writability fencing, and a role change's hold is lifted.
func (d *Database) Unmanage() {
	d.managed.Store(false)
	d.Unhold(HoldRoleChange)
}

// Managed reports whether a role-change engine watches the database.
func (d *Database) Managed() bool { return d.managed.Load() }

// Trouble delivers a signal when a server reported the signs of a primary
// going away or a dial failed. One signal stands for any number.
func (d *Database) Trouble() <-chan struct{} { return d.trouble }

// dialTrouble decides whether a failed dial is a role-change matter: the
// server refused the connection, is starting up or shutting down (57P03,
// 57P01), or is not writable. Then the database is held at once, the
// engine is told, and the acquisition waits in the hold instead of failing.
// Authentication failures and the like go to the client.
func (d *Database) dialTrouble(err error) bool {
	if !d.managed.Load() {
		return false
	}
	var le *pool.LoginError
	if errors.As(err, &le) && !le.Wait {
		// A wrong password, a missing database, a certificate that does
		// not verify: no role change heals it; the client gets it.
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P01", "57P02", "57P03", "25006":
		default:
			// 53300 and the like: the pool waits for one of its
			// connections instead (pool.LoginError).
			return false
		}
	}
	d.Hold(HoldRoleChange)
	d.serverTrouble("08001", 0)
	return true
}

// Probe connects to host:port with a server login of this database and
// reports whether it is writable. With no login known yet (no client has
// logged in and the database forces no user) it returns ErrNoLogin.
func (d *Database) Probe(ctx context.Context, host string, port int) (bool, error) {
	n, err := d.probe(ctx, host, port, false)
	return n.Writable, err
}

// Node is what ProbeNode learns of a server.
type Node struct {
	Writable bool // pg_is_in_recovery() = false
	// Started is the postmaster's start time (pg_postmaster_start_time(),
	// to the microsecond): two addresses with the same Started are one
	// server (a TCP address and a Unix socket, a DNS alias), not two
	// primaries.
	Started string
}

// ProbeNode is Probe that also tells which server answered (the split
// brain check). Probe itself asks only pg_is_in_recovery(), as libpq's
// target_session_attrs=read-write does.
func (d *Database) ProbeNode(ctx context.Context, host string, port int) (Node, error) {
	return d.probe(ctx, host, port, true)
}

func (d *Database) probe(ctx context.Context, host string, port int, identify bool) (Node, error) {
	pc, err := d.probeConn(ctx, host, port)
	if err != nil {
		return Node{}, err
	}
	defer closeProbe(pc)
	if !identify {
		w, err := isWritable(ctx, pc)
		return Node{Writable: w}, err
	}
	res, err := pc.Exec(ctx, "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.pg_postmaster_start_time()::text").ReadAll()
	if err != nil {
		return Node{}, fmt.Errorf("check pg_is_in_recovery(): %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 2 {
		return Node{}, errors.New("check pg_is_in_recovery(): unexpected result")
	}
	row := res[0].Rows[0]
	return Node{Writable: string(row[0]) == "f", Started: string(row[1])}, nil
}

// probeConn connects to host:port with a server login of this database,
// for a check; close it with closeProbe.
func (d *Database) probeConn(ctx context.Context, host string, port int) (*pgconn.PgConn, error) {
	d.mu.Lock()
	var login serverLogin
	switch {
	case d.cfg.User != "":
		login = serverLogin{User: d.cfg.User, Password: d.cfg.Password, DBName: d.cfg.DBName}
	case d.login != nil:
		login = *d.login
	default:
		d.mu.Unlock()
		return nil, ErrNoLogin
	}
	tlsCfg := d.r.Config().Proxy.ServerTLS
	d.mu.Unlock()
	cfg, err := pgconnConfig(pool.Target{Host: host, Port: port}, login, tlsCfg, "pauseproxy-probe")
	if err != nil {
		return nil, err
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, &ProbeError{User: login.User, Err: classifyLogin(err)}
	}
	return pc, nil
}

func closeProbe(pc *pgconn.PgConn) {
	cctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	pc.Close(cctx)
}

// ErrNoLogin is Probe's answer when no server login is known yet.
var ErrNoLogin = errors.New("no server login known yet to probe with")
