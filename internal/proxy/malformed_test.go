package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// TestMalformedMessagesAnsweredAsPostgreSQL sends, after login, messages
// PostgreSQL refuses, to the proxy and straight to PostgreSQL, and wants
// the same answers: a message type no session takes (FATAL 08P01 and the
// end of the connection, without a server ever seeing it through the
// proxy) and a Close of neither a statement nor a portal (08P01, the
// session goes on).
func TestMalformedMessagesAnsweredAsPostgreSQL(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 1})
	sync := []byte{wire.MsgSync, 0, 0, 0, 4}
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"unknown message type", []byte{'Z', 0, 0, 0, 4}},
		{"password message after login", []byte{'p', 0, 0, 0, 8, 'x', 'y', 'z', 0}},
		{"Close of another kind", append([]byte{'C', 0, 0, 0, 6, 'X', 0}, sync...)},
		{"Describe of another kind", append([]byte{'D', 0, 0, 0, 6, 'X', 0}, sync...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			direct := answers(t, pg.DSN("app", "apppass", "appdb"), tc.send)
			proxied := answers(t, p.DSN("app", "apppass", "appdb"), tc.send)
			if proxied != direct {
				t.Fatalf("through the proxy:\n%s\nstraight to PostgreSQL:\n%s", proxied, direct)
			}
			// The proxy's one server connection is still good.
			c, err := pgconn.Connect(context.Background(), p.DSN("app", "apppass", "appdb"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			if _, err := c.Exec(context.Background(), "SELECT 1").ReadAll(); err != nil {
				t.Fatalf("next client: %v", err)
			}
		})
	}
}

// answers logs in at dsn, sends raw and describes what comes back up to
// the first ReadyForQuery or the end of the connection.
func answers(t *testing.T, dsn string, raw []byte) string {
	t.Helper()
	nc := hijacked(t, dsn)
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := nc.Write(raw); err != nil {
		t.Fatal(err)
	}
	rd := wire.NewReader(nc, 0)
	var got []string
	for {
		m, err := rd.ReadMessage()
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || err != nil && strings.Contains(err.Error(), "reset") {
			return strings.Join(append(got, "end of connection"), "\n")
		}
		if err != nil {
			t.Fatalf("reading the answer (so far %q): %v", got, err)
		}
		switch m.Type() {
		case wire.MsgErrorResponse:
			e, _ := wire.ParseError(m)
			got = append(got, fmt.Sprintf("%s %s %s", e.Severity, e.Code, e.Message))
		case wire.MsgReadyForQuery:
			return strings.Join(append(got, "ReadyForQuery"), "\n")
		case wire.MsgNoticeResponse, wire.MsgParameterStatus:
		default:
			got = append(got, string(m.Type()))
		}
	}
}

// hijacked logs in at dsn and returns the connection, for raw messages; it
// is closed when the test ends.
func hijacked(t *testing.T, dsn string) net.Conn {
	t.Helper()
	c, err := pgconn.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	hj, err := c.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hj.Conn.Close() })
	return hj.Conn
}
