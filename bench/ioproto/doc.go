// Command ioproto measures I/O architectures for pauseproxy's
// transaction-mode hot path apart from the router's logic: three tiny
// forwarders that share one small pool of server connections, and a
// harness that runs pgbench through each of them, through PgBouncer and
// directly against PostgreSQL.
//
//	go run ./bench/ioproto -measure [-rounds 5] [-pauseproxy BIN] [-targets pair,epoll-raw]
//	go run ./bench/ioproto -serve epoll [-raw] [-lock] -server 'host=... user=... dbname=... sslmode=disable'
//
// docs/performance.md, "I/O architecture prototypes", says what -measure
// runs and what the figures of the last run mean.
//
// The forwarders (pair.go, single.go, epoll.go):
//
//   - pair: today's shape. Per client a pump goroutine reads the client
//     and writes to the bound server; per server connection a reader
//     goroutine forwards the answer and releases the connection.
//   - single: option (a). One goroutine per client reads the client's
//     batch, binds a server, writes, reads the answer itself up to its
//     ReadyForQuery, writes it to the client and releases.
//   - epoll: option (b). One event loop per core over epoll_wait with
//     non-blocking sockets, the shape of PgBouncer and Odyssey.
//
// All three answer a client's startup themselves (SSLRequest with 'N',
// then AuthenticationOk, the ParameterStatus messages of a server login,
// BackendKeyData, ReadyForQuery), forward every other message by its
// 5-byte header without decoding the body (framer, wire.go) and give a
// server connection back at the ReadyForQuery that answers everything
// sent and says idle (txn, wire.go).
//
// Files: wire.go (framing, the release rule, startup), servers.go (server
// logins, the forwarder interface), goshape.go (what pair and single
// share), pair.go, single.go, epoll.go; measure.go and report.go (the
// harness).
//
// It is a measuring prototype and must not be used as a pooler: no TLS,
// no authentication (every client gets the server connections of the one
// user and database the pool logged in with, trust auth), no
// cancellation, no timeouts, no parameter tracking, no named statements
// across server connections, no COPY, and a client that leaves inside a
// transaction costs the pool its server connection. It imports no
// pauseproxy package but internal/pgtest, for the harness and the tests.
package main
