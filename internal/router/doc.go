// Package router serves logged-in clients: it owns the databases, their
// pools and holds, and one Session per client that carries the client's
// messages to a server connection and the answers back.
//
// It must not read or write sockets it does not own (below), decide which
// node is the primary (the role-change engine in internal/failover does,
// through Database.Retarget, Hold and Probe), or parse more of a message
// than it must look at.
//
// # Layers
//
// internal/wire frames messages and decodes the few the proxy inspects;
// internal/pool dials, authenticates and lends server connections
// (pool.Conn, each with its own reader goroutine); this package decides
// what to send where and when a server connection goes back.
//
// # Who owns what
//
// A session has two goroutines, each the only owner of one socket
// direction:
//
//   - the client pump (Session.Run) is the only reader of the client
//     socket and the only writer to the bound server (through sbuf, the
//     session's own buffer);
//   - the bound server connection's reader goroutine (pool.Conn.readLoop)
//     is the only reader of the server socket; it calls ServerMessage,
//     ServerFailed and Released.
//
// The client socket's write side has one writer, the session's
// clientWriter, and one hand-off rule (clientwriter.go): whoever has
// something for the client (the pump, the server's reader, writeNotifies
// for an idle client's notifications) writes whole messages through
// send/sendLocked under wmu, and a decision made under mu is written
// before mu is given up. So the client sees messages in the order the
// server sent them, with the proxy's own answers (a ParseComplete it
// owes, an error for a batch it failed) slotted in by the expectation
// queue (stmts.go). Lock order: Session.pmu, Router.mu,
// Session.mu, Session.wmu; nobody holds mu while blocking on a socket,
// and nobody takes mu while holding wmu.
//
// The pump's side of the session (its buffers, the writes to the bound
// server) belongs to whoever holds pmu: the pump itself, which lends it
// only while it is blocked reading the client, and a retry goroutine
// while it runs a refused batch again (retry.go). Nobody interrupts a
// goroutine's read to hand work over: a retry is run by whichever of the
// two takes pmu first, so it always runs before the client's next
// message.
//
// # Phases of a session
//
// The phase (phase.go) is data, changed only by setPhaseLocked, which also
// keeps what SHOW CLIENTS shows:
//
//  1. Login (internal/proxy, then Router.Start): startup parameters are
//     checked and recorded as the values the client expects (want, and
//     initial for RESET ALL), the client gets ParameterStatus,
//     BackendKeyData and ReadyForQuery. No server is bound.
//  2. Idle (phaseIdle): the pump waits for the client. client_idle_timeout
//     is the read deadline.
//  3. Waiting (phaseWaiting): the client's first message of a transaction
//     arrived and bind waits for a server connection of the pool: a full
//     pool, a PAUSE or a role-change hold keeps it here, bounded by
//     hold_timeout; a CancelRequest ends the wait with 57014 and the
//     statement is never sent. A Parse or Close the proxy can answer
//     without a server (answerUnbound) never waits.
//  4. Active (phaseActive): a server connection is bound. Its state is
//     one value, the binding (phase.go: the connection, what is
//     outstanding on it, when it began), made by attachLocked and dropped
//     by detachLocked, so every way a binding ends resets the same state.
//     bind queued the SETs that make it match the client's parameters
//     (paramSync, answers swallowed); the pump forwards messages, tracking statement names
//     (track.go) and what they do to recorded state (effects.go); the
//     reader forwards the answers. While the client is idle inside a
//     transaction, idle_transaction_timeout is the read deadline (set by
//     whichever goroutine saw the state last: the reader at ReadyForQuery,
//     the pump before it reads); query_timeout cancels a batch that runs
//     too long.
//  5. Release: at each ReadyForQuery the reader checks releasableLocked,
//     the one rule for giving a server connection back in transaction
//     mode (everything sent has been answered, nothing new was sent, no
//     transaction open). The connection goes back to the pool before the
//     client gets its ReadyForQuery (Released flushes it), and the session
//     is idle again. In session mode the binding lasts until the client
//     leaves; then the server_reset_query runs before the pool takes the
//     connection back.
//  6. Retrying (phaseRetrying): a primary going away refused an implicit
//     transaction that did nothing; the reader retires the connection and
//     queues the batch, which runs again (on the pump's side, under pmu)
//     once a primary is verified (retry.go for the exact conditions). No
//     idle timeout runs meanwhile: the client waits for its answer. A
//     backend terminated alone (pg_terminate_backend) is not retried, nor
//     does one ended by its session's own timeout hold anyone; a batch
//     that met idle_session_timeout on its way runs again (killed.go).
//  7. Closing: the client left, a timeout fired, the proxy drains, or (in
//     session mode) the server connection died. end releases a clean
//     server connection, and closes one with anything in flight; from
//     then on the client is sent nothing (ServerFailed stays silent).
//
// Before any of this, a message type no logged-in session may send ends
// the client with PostgreSQL's FATAL 08P01 (wire.SessionMessage), and a
// server never sees it.
//
// # Transactions and the pool
//
// A transaction starts with the first client message after a release and
// ends at the ReadyForQuery that satisfies releasableLocked. Server state
// that outlives a transaction is the proxy's to keep right: named prepared
// statements are shared per server connection under proxy-wide names
// (stmts.go), parameters are SET per binding (params.go), and statements
// that change either behind the proxy's record are recognised in any
// protocol and applied when the server confirms them (effects.go).
//
// # Where things are
//
//   - router.go: the Router, logins (Start), cancel keys; peers.go: cancel
//     forwarding between instances.
//   - session.go: the client pump (Run, handle, bind); server.go: the bound
//     server's messages (ServerMessage, readyForQuery, ServerFailed);
//     phase.go: phases, the binding and the release rule; timeouts.go;
//     cancel.go: that a cancel reaches the right statement; stream.go:
//     large messages.
//   - track.go, stmts.go, shape.go: shared named statements and their
//     result types; effects.go, effects_session.go: statements that change
//     recorded state; params.go, settable.go: session parameters.
//   - listen.go: LISTEN/NOTIFY in transaction mode.
//   - retry.go: the safe retry; killed.go: a backend terminated alone,
//     and FATALs that end one session only.
//   - database.go, dial.go, rolechange.go, holds.go, drain.go, refusal.go:
//     databases, their pools, holds and role changes; reads.go,
//     reads_session.go: replica targets and read-only routing.
//   - inspect.go, clienterrors.go, querytime.go, prepared.go, histogram.go:
//     what the console and the metrics read.
//
// # Holds
//
// A database is held for a reason ("pause", "role-change", ...); while any
// reason holds it, acquisitions wait in arrival order and transactions in
// flight go on. A role change starts from the engine, or from the signs a
// session sees (roleChangeCode, a broken connection), reported through
// Database.serverTrouble.
package router
