package failover_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/patronitest"
)

// TestListenSurvivesSwitchover: a client LISTENing through the proxy in
// transaction mode keeps receiving notifications after a Patroni
// switchover: the listener connection follows the new primary, LISTENs
// again, and tells its clients that notifications sent in the gap may be
// lost.
func TestListenSurvivesSwitchover(t *testing.T) {
	c := patronitest.Require(t, patronitest.Options{Store: patronitest.StoreEtcd})
	p := startProxy(t, patroniDB(c, "patroni"), `hold_timeout = "30s"`)
	ctx := context.Background()
	notes := make(chan *pgconn.Notification, 100)
	notices := make(chan string, 100)
	cfg, err := pgconn.ParseConfig(p.DSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) { notes <- n }
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices <- n.Message }
	listener, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN jobs").ReadAll(); err != nil {
		t.Fatal(err)
	}
	notifier, err := pgconn.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer notifier.Close(ctx)
	// receive NOTIFYs payload until it arrives (a notification sent while
	// the listener reconnects is lost, as for a PostgreSQL client), or
	// fails after a generous deadline.
	receive := func(payload string) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := notifier.Exec(ctx, fmt.Sprintf("NOTIFY jobs, '%s'", payload)).ReadAll(); err != nil {
				t.Logf("NOTIFY: %v", err)
			}
			wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			listener.WaitForNotification(wctx)
			cancel()
			for len(notes) > 0 {
				if n := <-notes; n.Payload == payload {
					return
				}
			}
		}
		t.Fatalf("notification %q never arrived", payload)
	}
	receive("before")
	old, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replicas, err := c.Replicas(ctx)
	if err != nil || len(replicas) == 0 {
		t.Fatalf("no replica: %v", err)
	}
	if err := c.Switchover(ctx, replicas[0].Name); err != nil {
		t.Fatal(err)
	}
	t.Logf("switchover %s -> %s", old.Name, replicas[0].Name)
	receive("after")
	// The notifier's server is the new primary.
	res := notifier.ExecParams(ctx, "SELECT inet_server_port()", nil, nil, nil, nil).Read()
	if res.Err != nil || string(res.Rows[0][0]) != fmt.Sprint(replicas[0].PGPort) {
		t.Fatalf("notifier on port %q (%v), want the new primary %d", res.Rows, res.Err, replicas[0].PGPort)
	}
	warned := false
	for len(notices) > 0 {
		if strings.Contains(<-notices, "listener connection was re-established") {
			warned = true
		}
	}
	if !warned {
		t.Fatal("the listening client was not told that notifications may have been lost")
	}
}
