package drivers_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// TestCancelAfterWaitingForServer is the minimal form of the lost cancels
// TestNodePg and TestPsycopg3 meet now and then: client b waits for the
// only server connection while a holds it; the moment a's statement ends,
// b's statement is bound and b's CancelRequest arrives. b's startup
// statement_timeout differs from a's, so the proxy first sends its own SET
// on the server connection. Directly on PostgreSQL b's statement is in
// flight and the cancel ends it; through the proxy it must end it too, not
// the proxy's SET nor an idle server. The window is small, so the test
// tries many times with the cancel a few tens of microseconds apart.
func TestCancelAfterWaitingForServer(t *testing.T) {
	if os.Getenv("PAUSEPROXY_KNOWN_BUGS") != "1" {
		t.Skip("known proxy bug: a CancelRequest that arrives while the proxy syncs a client's startup parameters " +
			"on its newly bound server connection is lost (about 1 trial in 25 here); set PAUSEPROXY_KNOWN_BUGS=1 to run")
	}
	p := proxytest.Start(t, fmt.Sprintf(`
[proxy]
listen_addr = "127.0.0.1"
listen_port = {{port}}
auth_type = "scram-sha-256"
auth_file = "{{dir}}/userlist.txt"
pool_mode = "transaction"
default_pool_size = 1

[databases.appdb]
host = %q
port = %d
`, pg.Host, pg.Port), proxytest.WithFile("userlist.txt", `"app" "apppass"`+"\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	connect := func(timeoutMs int) *pgconn.PgConn {
		c, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://app:apppass@127.0.0.1:%d/appdb?sslmode=disable&options=-c%%20statement_timeout%%3D%d", p.Port, timeoutMs))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	const trials = 40
	lost := 0
	for trial := 0; trial < trials; trial++ {
		a, b := connect(50001), connect(50002)
		aDone := make(chan struct{})
		go func() {
			defer close(aDone)
			a.Exec(ctx, "SELECT pg_sleep(0.3)").ReadAll()
		}()
		time.Sleep(100 * time.Millisecond) // a holds the server connection
		bDone := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := b.Exec(ctx, "SELECT pg_sleep(3)").ReadAll()
			bDone <- err
		}()
		<-aDone
		time.Sleep(time.Duration(trial%10) * 50 * time.Microsecond)
		if err := b.CancelRequest(ctx); err != nil {
			t.Fatal(err)
		}
		err := <-bDone
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			lost++
			t.Logf("trial %d: b's pg_sleep(3) was not cancelled (%v), it ended after %s", trial, err, time.Since(start).Round(time.Millisecond))
		}
		a.Close(ctx)
		b.Close(ctx)
	}
	if lost > 0 {
		t.Errorf("%d of %d cancels sent while b's statement was being bound did not cancel it", lost, trials)
	}
}
