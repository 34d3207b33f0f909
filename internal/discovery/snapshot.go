// Package discovery finds the writable primary of a database, and its
// replicas with their state, lag and Patroni tags (for reads: see
// internal/failover's ReadWatcher), and publishes what it knows as
// immutable snapshots. Sources: a static host list (asking
// each host pg_is_in_recovery()), Patroni's REST API, and Consul (Patroni's
// service registrations and KV keys).
//
// It owns polling, back-off and the interpretation of each source's answers.
// It must not import any other pauseproxy package, hold client connections,
// or decide when traffic is held: a snapshot says what the source believes;
// the router decides what to do with it (and verifies writability itself
// before sending a transaction anywhere).
//
// # Reading a snapshot
//
// Primary is the source's candidate, not a proof: Patroni names a new
// leader before its promotion has finished, and keeps answering for the old
// one until its postmaster exits. While a change is under way Changing is
// true and Primary may be the old primary (stopping), nil (no leader), or
// the new one (promoting). Generation moves whenever Primary's name or
// address does, so a watcher compares generations rather than members.
//
// Changing also stays true for a while after the new primary accepts writes
// (on Consul, until the service registration follows the KV keys: about 3s
// in tests), so the router must not wait for Changing to clear before it
// releases traffic: it releases as soon as pg_is_in_recovery() is false on
// Primary.
//
// Measured on Patroni 3.0.2 with loop_wait 1 on a 2-node local cluster
// (internal/patronitest): a switchover leaves no writable primary for about
// 1.4s; the Patroni source names the candidate about 150ms before it accepts
// writes and clears Changing about 50ms after; the Consul source says
// Changing within milliseconds of the switchover request (the failover key).
//
// # Lifecycle
//
// A source is built by NewStatic, NewPatroni or NewConsul, and runs once:
// Run returns when its context is done, with every goroutine and idle
// connection it started gone. Snapshot, Changed and Hurry may be called
// from any goroutine, before, during and after Run.
package discovery

import (
	"context"
	"net"
	"strconv"
	"time"
)

// Member is one node of a cluster as a source describes it.
type Member struct {
	Name     string // Patroni member name, or host:port for static
	Host     string // PostgreSQL host
	Port     int    // PostgreSQL port
	APIURL   string // Patroni REST API base URL, "" when unknown
	Role     string // normalised: "primary", "replica", "standby_leader", ""
	State    string // Patroni state: "running", "streaming", "stopped", ...
	Timeline int64
	// LagBytes is the replication lag in bytes when known, -1 otherwise.
	LagBytes int64
	// ReplayDelay is how far a replica's replay is behind, in time: now()
	// - pg_last_xact_replay_timestamp() while received WAL waits to be
	// replayed, 0 when it has replayed everything or when unknown. Only a
	// static source with a RoleProbe measures it.
	ReplayDelay time.Duration
	// NoLoadBalance and NoFailover are Patroni's member tags of those
	// names: a replica tagged either takes no reads.
	NoLoadBalance, NoFailover bool
}

// Addr is host:port.
func (m Member) Addr() string { return joinHostPort(m.Host, m.Port) }

// Snapshot is what a source knows at one moment. A published snapshot is
// never modified; sources publish a new one instead.
type Snapshot struct {
	// Generation increases by one each time the primary (name or address)
	// changes, including to or from "none".
	Generation uint64
	// Source describes where the snapshot came from ("patroni", "consul",
	// "static") and Endpoint which URL/address answered last.
	Source   string
	Endpoint string
	// Primary is nil when the source names no leader.
	Primary  *Member
	Replicas []Member
	// Changing is true while the source signals a change under way (a
	// failover key in Consul, a member in state "stopping"/"demoting", a
	// leader that is not yet running as primary). Sources poll fast then.
	Changing bool
	// Planned is set while an operator's switchover is requested and not
	// carried out yet: the value of Patroni's failover key (Consul only;
	// Patroni writes it before it demotes the primary, the earliest notice
	// there is). The primary named is still the old one, still writable.
	// "" otherwise.
	Planned string
	// Updated is when the source last had a successful answer; Err is the
	// last error (nil after a success).
	Updated time.Time
	Err     error
}

// Source is a running discovery source for one database.
type Source interface {
	// Run polls (or blocks on watches) until ctx is done. It publishes the
	// first snapshot as soon as it has one.
	Run(ctx context.Context)
	// Snapshot returns the latest snapshot, never nil (an empty snapshot with
	// Err set before the first answer).
	Snapshot() *Snapshot
	// Changed is closed when a snapshot newer than the one returned by the
	// Snapshot call that preceded it is published; call Changed again for
	// the next one (the pattern of a broadcast channel).
	Changed() <-chan struct{}
	// Hurry asks the source to poll fast for a while (the router calls it
	// when a server connection reports the primary going away).
	Hurry()
}

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
