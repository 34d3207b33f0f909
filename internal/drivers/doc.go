// Package drivers runs real PostgreSQL client drivers through pauseproxy
// and checks every result they get. It is a test-only package: doc.go is
// its only non-test file, and it must not be imported.
//
// Each test (TestPsycopg3, TestPsycopg2, TestAsyncpg, TestNodePg,
// TestPostgresJS, TestPgjdbc) starts an in-process proxy in transaction
// mode with default_pool_size = 3 in front of the package's throwaway
// PostgreSQL (internal/pgtest, internal/proxytest), creates a fresh schema
// for the driver, and runs a script from testdata/ in the driver's own
// language with 30 concurrent clients. The script checks what each query
// returns and exits non-zero on the first wrong answer; the Go test then
// checks the tables directly on PostgreSQL. Every workload covers the same
// ground, in the driver's idiom:
//
//  1. Startup parameters: each client connects with its own
//     statement_timeout and the driver's schema as search_path, and checks
//     current_setting() of both after rollbacks, DEALLOCATE ALL, RESET ALL
//     and (asyncpg) pool releases; a client with a short timeout checks it
//     still cancels a pg_sleep after RESET ALL.
//  2. Prepared selects with parameters, in the driver's way of preparing
//     (psycopg 3 prepare_threshold=0, asyncpg's statement cache,
//     node-postgres named queries, postgres.js' default, pgjdbc
//     prepareThreshold=1; psycopg2 has none: PREPARE/EXECUTE in one
//     transaction).
//  3. Inserts in explicit transactions, each client reading back exactly
//     its own rows.
//  4. An error inside a transaction, ROLLBACK, and reuse of the connection
//     (psycopg 3 then sends DEALLOCATE ALL over the extended protocol);
//     a pg_sleep cancelled by the driver after a second (a CancelRequest,
//     most of them for clients still waiting for one of the 3 server
//     connections), then the connection used again. node-postgres has no
//     cancel API and skips that step.
//  5. ALTER TABLE ... ADD COLUMN while all clients have SELECT * cached,
//     once by a client through the proxy and once behind the proxy's back
//     (a migration run straight on PostgreSQL): PostgreSQL's 0A000 "cached
//     plan must not change result type" is tolerated once per connection,
//     then the new column must show.
//  6. COPY FROM STDIN and COPY TO STDOUT of each client's own rows.
//  7. A 100,000-row result, checked by count and sum.
//
// A missing driver fails the test (never skips), naming the Debian or npm
// package to install; scripts/install-deps.sh installs them all. The npm
// packages (versions pinned in testdata/npm-packages.txt) live in
// $HOME/.cache/pauseproxy/npm, installed there by install-deps.sh or, if
// absent, by the test itself. PAUSEPROXY_DRIVERS_DIRECT=1 runs the same
// scripts straight against PostgreSQL, to tell a driver or script problem
// from a proxy one; a test that fails through the proxy reruns its script
// directly and says which it is.
package drivers
