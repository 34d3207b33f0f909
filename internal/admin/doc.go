// Package admin is pauseproxy's control surface: the PgBouncer-compatible
// admin console, PAUSE and RESUME, the event log, and the HTTP endpoints
// for health, readiness and pause/resume.
//
// # The console
//
// Console serves the virtual database "pgbouncer" (alias "pauseproxy")
// after proxy.Server has authenticated the client. It admits admin_users
// (every command) and stats_users (SHOW only), whatever the auth_type, and
// speaks the simple query protocol only, as PgBouncer's console does. Its
// commands, column names and column order are PgBouncer's, so runbooks
// (`psql -p 6432 pgbouncer -c PAUSE`, `SHOW STATE | grep 'paused|no'`) and
// exporters keep working; columns pauseproxy adds come after PgBouncer's.
// It adds SHOW TOPOLOGY, SHOW EVENTS, SWITCHOVER, KILL_CLIENT and
// PAUSE ... TIMEOUT ... EXPIRE. docs/admin.md lists everything.
//
// # PAUSE
//
// Pauser is the one implementation of PAUSE and RESUME, shared by the
// console, SIGUSR1/SIGUSR2 and HTTP. It holds databases with the router's
// reason-based hold (reason "pause"), so a RESUME never ends a role
// change's hold, waits for transactions in flight bounded by
// drain_timeout, applies pause_timeout_action on timeout, and resumes by
// itself after an optional expiry. See Pauser for the concurrency rules.
//
// # What it does not own
//
// The package reads the router and the pools and calls their control
// methods (Hold, Disable, Reconnect, Kill); it never touches a socket of
// theirs. What it needs from the rest of the process it asks through small
// interfaces it declares (Control, Topology, Switchover, Readiness), which
// cmd/pauseproxy and the role-change engine implement. It exports no
// metrics itself: internal/metrics reads the same state and subscribes to
// Events.
package admin
