// Package ops runs the operator commands that move or restart a primary
// with traffic held: switchover (ask Patroni to hand the primary to a
// replica) and exec (run any maintenance command), plus the thin
// pause/resume/status helpers of `pauseproxy ctl`.
//
// Each command is a pipeline of named steps, in the manner of
// stolon-pgbouncer's failover (pkg/failover): every step is logged with
// its duration; the undo of a step is registered before the step runs, and
// undos run, newest first, under a context of their own, so that a
// timeout or an interrupt of the command still resumes traffic. A
// switchover runs:
//
//  1. discover: ask the database's discovery (Patroni REST or Consul) for
//     the members' REST API URLs.
//  2. lock: one switchover (or exec) per cluster at a time: a Consul lock
//     when the database uses Consul, a lock file otherwise.
//  3. proxies: connect to every proxy's admin console (the local one, the
//     config's peers and, with consul_register, the instances registered
//     in Consul: PeerConsoles, listed once in the log with where each came
//     from) and check that the database is known, not paused by someone
//     else, and served from a verified primary.
//  4. check: Patroni's GET /cluster says the cluster can take it: a
//     running leader, a replica (the candidate, if named) streaming with
//     little lag, no switchover already scheduled; every proxy serves the
//     leader; the leader's REST API takes our credentials and client
//     certificate (an empty POST /switchover, which Patroni refuses with
//     400 once access is granted, or 401/403 when not).
//  5. pause: PAUSE db TIMEOUT drain_timeout EXPIRE (time left + margin) on
//     every proxy at once, all or nothing: if one fails, all resume. The
//     expiry resumes traffic by itself should this process die.
//  6. switchover: POST /switchover to the leader's REST API; the step ends
//     when no proxy serves the old primary any more.
//  7. wait: until every proxy reports a verified writable primary other
//     than the old one (SHOW TOPOLOGY's verified column), polled fast.
//     Patroni answers the POST only on its own 1s poll after the leader
//     moved, so neither step waits for that answer; a refusal ends them.
//  8. resume: RESUME db on every proxy; then Patroni's answer is collected
//     for the report, and the lock released.
//
// Exec runs lock, proxies, pause, then the command, wait (for any verified
// primary that discovery names), reconnect (RECONNECT db, so that every
// server connection is dialed, and verified writable, anew) and resume.
//
// This package asks proxies and Patroni to do things; it holds no client
// traffic itself and never decides on its own that a node is writable: the
// proxies' role-change engines verify that (package failover). It talks to
// proxies only through the Proxy interface, so that the admin console's
// SWITCHOVER runs the same pipeline in-process (cmd/pauseproxy).
package ops
