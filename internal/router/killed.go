package router

import (
	"context"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/pool"
)

// One server connection terminated, or the server going away?
//
// PostgreSQL sends the same FATAL 57P01 ("terminating connection due to
// administrator command") to a backend an operator ends with
// pg_terminate_backend() and to every backend of a server that shuts down.
// A new connection tells them apart at once: a server shutting down
// refuses it (57P03) or is gone, one that ended a single backend takes it
// and, for a managed database, is still writable. A single terminated
// connection is that connection's death only: the statement it ran is not
// run again elsewhere (the operator meant to stop it), and no role-change
// cycle holds the database's other clients.

// Other FATALs end one session by its own doing and never mean the server
// goes away: a timeout of the session (idle_in_transaction_session_timeout,
// idle_session_timeout, PostgreSQL 17's transaction_timeout) or a protocol
// violation. They are that connection's death too, without a probe.

// sessionFatal reports the SQLSTATEs of such FATALs.
func sessionFatal(code string) bool {
	switch code {
	case "25P03", "25P04", "57P05", "08P01":
		return true
	}
	return false
}

// killProbeTimeout bounds the check; a server that cannot answer in time is
// taken to be going away, the safe side (a hold and a verification).
const killProbeTimeout = 2 * time.Second

// killedAlone reports whether a connection to t that got 57P01 was
// terminated on its own while its server goes on serving.
func (d *Database) killedAlone(t pool.Target) bool {
	ctx, cancel := context.WithTimeout(context.Background(), killProbeTimeout)
	defer cancel()
	writable, err := d.Probe(ctx, t.Host, t.Port)
	if err != nil {
		return false
	}
	return writable || !d.managed.Load()
}

// idleServerError is the pools' OnServerError: an idle server connection
// reported an error before it closed. A 57P01 is checked first, so that an
// operator terminating idle pooled connections starts no role change.
func (d *Database) idleServerError(code string, gen uint64) {
	if sessionFatal(code) {
		// Its own timeout (idle_session_timeout): the pool drops it.
		return
	}
	if code != "57P01" {
		d.serverTrouble(code, gen)
		return
	}
	t := d.Target()
	go func() {
		if !d.killedAlone(t) {
			d.serverTrouble(code, gen)
		}
	}()
}
