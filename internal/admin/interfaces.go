package admin

import (
	"context"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/discovery"
)

// The console and the HTTP endpoints reach what the admin package does not
// own through these small interfaces. cmd/pauseproxy implements Control and
// Switchover (with package ops); the role-change engines (failover.Manager)
// implement Topology and Readiness. Each is optional: without it the
// commands that need it say so, and SHOW TOPOLOGY and /readyz fall back to
// what the router knows.

// Control is what the console asks of the running process.
type Control interface {
	// Reload re-reads the configuration file (RELOAD, SIGHUP). An error
	// means the old configuration stays; its text is shown to the
	// operator.
	Reload() error
	// Set changes one [proxy] setting in memory (SET key = value), as
	// config.WithSetting does, and applies it like a reload.
	Set(key, value string) error
	// Shutdown stops the process: mode "" at once (closing every
	// connection), ShutdownWaitForClients once every client has left
	// (SIGTERM's drain), ShutdownWaitForServers once every server
	// connection is released (PAUSE, then exit). It returns at once; the
	// console has answered before the process goes.
	Shutdown(mode string) error
}

// Shutdown modes (PgBouncer's SHUTDOWN arguments).
const (
	ShutdownWaitForServers = "WAIT_FOR_SERVERS"
	ShutdownWaitForClients = "WAIT_FOR_CLIENTS"
)

// Topology is what discovery knows about a database's cluster, and which
// primary the role-change engine verified.
type Topology interface {
	// Topology returns the latest discovery snapshot of database db, the
	// address ("host:port") verified writable in the current generation
	// ("" while none: no primary yet, or a role change under way), and
	// when its primary last changed (zero if never since start). ok is
	// false when db has no discovery source running (a static target).
	Topology(db string) (snap *discovery.Snapshot, verified string, lastChange time.Time, ok bool)
}

// Switchover moves a database's primary with its traffic held: the
// pipeline behind SWITCHOVER and the command line's switchover.
type Switchover interface {
	// Switchover moves database db's primary to member ("": the cluster
	// chooses), holding new transactions meanwhile, and returns a
	// one-line summary of what happened. It blocks until done or ctx
	// ends.
	Switchover(ctx context.Context, db, member string) (string, error)
}

// Readiness says whether the proxy can serve transactions now (/readyz).
// The role-change engine implements it with verified writable primaries;
// until then TargetProbe checks that each database's target accepts
// connections.
type Readiness interface {
	// Ready reports whether the proxy can serve: at least one database
	// can (one database without its primary does not take the proxy out
	// while others serve), or none is configured; problems has one line
	// per database that cannot, whatever ok says. It must answer within ctx (a probe's
	// timeout, about a second) and be cheap enough for frequent probes.
	Ready(ctx context.Context) (ok bool, problems []string)
}

// DatabaseReadiness is a Readiness that also answers for one database
// (/readyz?database=app). Both implementations (TargetProbe and the
// role-change engines) have it.
type DatabaseReadiness interface {
	// ReadyDatabase reports whether database db can serve its target
	// role now; found is false for a database the proxy does not know.
	ReadyDatabase(ctx context.Context, db string) (ok bool, problems []string, found bool)
}
