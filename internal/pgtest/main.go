package pgtest

import (
	"fmt"
	"net"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Main is for TestMain: it starts one cluster for the package with opts,
// passes it to setup (which typically stores it in a package variable), runs
// the tests, stops the cluster and exits. When the tests pass it also fails
// the package if goroutines are left running (goleak; leakOpts such as
// goleak.IgnoreTopFunction exempt known ones).
//
// If the cluster cannot start, Main prints why and exits 1: it never skips,
// so that CI fails rather than passes without PostgreSQL.
func Main(m *testing.M, opts Options, setup func(*Cluster), leakOpts ...goleak.Option) {
	os.Exit(runMain(m, opts, setup, leakOpts))
}

func runMain(m *testing.M, opts Options, setup func(*Cluster), leakOpts []goleak.Option) int {
	c, err := Start(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot start the test PostgreSQL cluster: %v\n", err)
		return 1
	}
	// Deferred too, so a panicking setup still removes the cluster.
	defer c.Stop()
	if setup != nil {
		setup(c)
	}
	code := m.Run()
	if err := c.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: stop the test PostgreSQL cluster: %v\n", err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(leakOpts...); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	return code
}

// Require starts a cluster for one test, stopped by t.Cleanup; it fails the
// test if the cluster cannot start. Prefer the package cluster from Main
// unless the test needs different Options.
func Require(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago: it
// listens on port 0 and closes the listener, so another process may take
// the port before the caller binds it.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
