// Package proxytest starts an in-process pauseproxy in front of a test
// PostgreSQL, for the tests of internal/proxy, internal/admin,
// internal/fidelity, internal/failover and internal/ops.
//
// It is for tests only: production code must not import it. It wires the
// pieces the way cmd/pauseproxy does (config.Load, router.New, optional
// failover.Manager and admin console, proxy.New, Listen, Serve) so that a
// test exercises the same path as the command, and it offers the small
// helpers those tests share (a logger writing to t.Log, a polling
// Eventually, pgbench output patterns).
package proxytest
