// Package pgtest starts throwaway PostgreSQL clusters for tests.
//
// A cluster lives in a private temporary directory (data directory, unix
// socket directory, server log, TLS files), listens on 127.0.0.1 on a free
// port and is removed by Stop. Use one cluster per test package through Main
// in TestMain; Require starts an extra cluster for a single test that needs
// different Options (auth method, TLS, settings).
//
// PostgreSQL refuses to run as root, and our tests run as root in CI: when
// the test process is root, initdb and postgres run as the "postgres" OS
// user (set on the child through SysProcAttr.Credential, which keeps the
// open-file limit, unlike runuser/su). When the test process is not root,
// the binaries run as the current user.
//
// The postmaster runs in the foreground as a child of the test process with
// a parent-death signal, so a crashed or killed test binary does not leave a
// server behind. The signal is set after the credential change in the child
// (Go's forkAndExecInChild order); a wrapper such as setpriv would change the
// user after the signal is set, and the kernel clears the parent-death signal
// on a change of effective uid, so we do not use one.
//
// The package owns only processes and files it created. It must not touch
// the machine's own PostgreSQL clusters (it never uses pg_ctlcluster or port
// 5432 on purpose) and must not skip tests: a missing PostgreSQL is an error,
// because CI must fail rather than pass without testing.
package pgtest
