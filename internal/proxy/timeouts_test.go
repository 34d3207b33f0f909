package proxy_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// readUntilClosed reads what the proxy sends on the idle client connection
// of c until it closes it (within a generous deadline), and returns it.
func readUntilClosed(t *testing.T, nc interface {
	Read([]byte) (int, error)
	SetReadDeadline(time.Time) error
}) []byte {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(60 * time.Second))
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := nc.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("waiting for the proxy to close the idle client: %v (read %q)", err, out)
		}
	}
}

func TestIdleTimeoutsAfterQueries(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mode  string
		extra string
		setup string // run before going idle
		code  string // SQLSTATE of the FATAL
	}{
		{name: "idle in transaction, transaction mode", mode: "transaction", extra: `idle_transaction_timeout = "1s"`, setup: "BEGIN; SELECT 1", code: "25P03"},
		{name: "idle in transaction, session mode", mode: "session", extra: `idle_transaction_timeout = "1s"`, setup: "BEGIN; SELECT 1", code: "25P03"},
		{name: "idle client, transaction mode", mode: "transaction", extra: `client_idle_timeout = "1s"`, setup: "SELECT 1", code: "57P05"},
		{name: "idle client, session mode", mode: "session", extra: `client_idle_timeout = "1s"`, setup: "SELECT 1", code: "57P05"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, proxyOptions{PoolMode: tc.mode, Extra: tc.extra})
			ctx := context.Background()
			c := pgconnTo(t, p, "")
			if _, err := c.Exec(ctx, tc.setup).ReadAll(); err != nil {
				t.Fatal(err)
			}
			// A statement running longer than the timeout is not idle.
			if _, err := c.Exec(ctx, "SELECT pg_sleep(1.5)").ReadAll(); err != nil {
				t.Fatalf("a statement longer than the timeout: %v", err)
			}
			start := time.Now()
			got := readUntilClosed(t, c.Conn())
			if time.Since(start) < 900*time.Millisecond {
				t.Fatalf("closed after %v, before the 1s timeout", time.Since(start))
			}
			if len(got) == 0 || got[0] != 'E' || !bytes.Contains(got, []byte("C"+tc.code+"\x00")) || !bytes.Contains(got, []byte("SFATAL\x00")) {
				t.Fatalf("want a FATAL %s before the close, got %q", tc.code, got)
			}
		})
	}
}

func TestIdleTransactionTimeoutFromReload(t *testing.T) {
	// A timeout set by RELOAD applies to a client already idle inside a
	// transaction: its idle time counts from the reload.
	o := proxyOptions{}
	p := startProxy(t, o)
	ctx := context.Background()
	c := pgconnTo(t, p, "")
	if _, err := c.Exec(ctx, "BEGIN; SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	o.Extra = `idle_transaction_timeout = "1s"`
	p.Reload(t, proxyTOML(o))
	got := readUntilClosed(t, c.Conn())
	if !bytes.Contains(got, []byte("C25P03\x00")) {
		t.Fatalf("want a FATAL 25P03 before the close, got %q", got)
	}
}

func TestTransactionTimeout(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			p := startProxy(t, proxyOptions{PoolMode: mode, Extra: `transaction_timeout = "1s"`})
			ctx := context.Background()
			c := pgconnTo(t, p, "")
			// Transactions shorter than the timeout, one after the other
			// for longer than it, are not touched.
			for i := 0; i < 6; i++ {
				if _, err := c.Exec(ctx, "BEGIN; SELECT 1; COMMIT").ReadAll(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(300 * time.Millisecond)
			}
			// One that lasts longer is ended, even while a statement runs.
			_, err := c.Exec(ctx, "BEGIN; SELECT pg_sleep(20)").ReadAll()
			if err == nil {
				t.Fatal("a transaction outlived transaction_timeout")
			}
			if code := sqlstate(err); code != "25P04" && !c.IsClosed() {
				t.Fatalf("want FATAL 25P04 and the connection closed, got %v", err)
			}
			if !c.IsClosed() {
				if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err == nil {
					t.Fatal("the connection outlived transaction_timeout")
				}
			}
		})
	}
}

func TestSilentConnectionsLogOneLine(t *testing.T) {
	// Many connections that never log in time out with one log line per
	// interval and a count, not one line each.
	var buf proxytest.SyncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	p := startProxy(t, proxyOptions{Extra: `client_login_timeout = "300ms"`, Opts: []proxytest.Option{proxytest.WithLog(log)}})
	var conns []net.Conn
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// Each is closed by the proxy after the timeout.
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		io.Copy(io.Discard, c)
	}
	if n := strings.Count(buf.String(), "client login timed out"); n < 1 || n > 10 {
		t.Fatalf("%d log lines for 200 login timeouts, want a handful:\n%s", n, buf.Tail(2000))
	}
}

func TestServerTimeoutsThroughTheProxy(t *testing.T) {
	ctx := context.Background()
	backend := func(t *testing.T, c interface {
		ExecParams(context.Context, string, [][]byte, []uint32, []int16, []int16) *pgconn.ResultReader
	}) string {
		t.Helper()
		res := c.ExecParams(ctx, "SELECT pg_backend_pid()", nil, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return string(res.Rows[0][0])
	}
	t.Run("server_lifetime", func(t *testing.T) {
		// A server connection older than server_lifetime is closed when
		// released, not reused.
		p := startProxy(t, proxyOptions{PoolSize: 1, Extra: `server_lifetime = "1s"`})
		c := pgconnTo(t, p, "")
		first := backend(t, c)
		proxytest.Eventually(t, 30*time.Second, "a new server connection after server_lifetime", func() bool {
			return backend(t, c) != first
		})
	})
	t.Run("server_idle_timeout", func(t *testing.T) {
		// An idle server connection is closed after server_idle_timeout
		// (the pool's janitor checks every second).
		p := startProxy(t, proxyOptions{PoolSize: 1, Extra: `server_idle_timeout = "1s"`})
		c := pgconnTo(t, p, "")
		first := backend(t, c)
		dc, err := pgconn.Connect(ctx, pg.DSN("postgres", "postgres", "postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer dc.Close(ctx)
		proxytest.Eventually(t, 30*time.Second, "the idle server connection closed", func() bool {
			res := dc.ExecParams(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", [][]byte{[]byte(first)}, nil, nil, nil).Read()
			return res.Err == nil && string(res.Rows[0][0]) == "0"
		})
		if got := backend(t, c); got == first {
			t.Fatal("the closed server connection was reused")
		}
	})
	t.Run("query_wait_timeout", func(t *testing.T) {
		// A client that cannot get a server connection within
		// query_wait_timeout gets an error and keeps its connection.
		p := startProxy(t, proxyOptions{PoolSize: 1, Extra: `query_wait_timeout = "1s"`})
		holder := pgconnTo(t, p, "")
		if _, err := holder.Exec(ctx, "BEGIN; SELECT 1").ReadAll(); err != nil {
			t.Fatal(err)
		}
		waiter := pgconnTo(t, p, "")
		start := time.Now()
		_, err := waiter.Exec(ctx, "SELECT 1").ReadAll()
		if err == nil || !strings.Contains(err.Error(), "query_wait_timeout") {
			t.Fatalf("want the query_wait_timeout error, got %v", err)
		}
		if time.Since(start) < 900*time.Millisecond {
			t.Fatalf("gave up after %v, before query_wait_timeout", time.Since(start))
		}
		if _, err := holder.Exec(ctx, "COMMIT").ReadAll(); err != nil {
			t.Fatal(err)
		}
		if _, err := waiter.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			t.Fatalf("the client after its wait timed out: %v", err)
		}
	})
}
