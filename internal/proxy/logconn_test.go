package proxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// Logins and disconnections are logged per log_connections and
// log_disconnections (PgBouncer's default: on); every refusal is logged
// once, with the client's address and the reason, whatever they say.
func TestConnectionLogLines(t *testing.T) {
	for _, tc := range []struct {
		name   string
		extra  string
		logins bool
	}{
		{name: "default", logins: true},
		{name: "off", extra: "log_connections = false\nlog_disconnections = false", logins: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logBuf proxytest.SyncBuffer
			p := startProxy(t, proxyOptions{Extra: tc.extra, Opts: []proxytest.Option{
				proxytest.WithLog(slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelInfo}))),
			}})
			ctx := context.Background()
			dsn := func(user, password, db string) string {
				return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", user, password, p.Addr, db)
			}
			c, err := pgx.Connect(ctx, dsn("app", "apppass", "appdb"))
			if err != nil {
				t.Fatal(err)
			}
			c.Close(ctx)
			for _, bad := range []string{dsn("app", "wrong", "appdb"), dsn("app", "apppass", "nosuchdb")} {
				if c, err := pgx.Connect(ctx, bad); err == nil {
					c.Close(ctx)
					t.Fatalf("%s: login succeeded", bad)
				}
			}

			count := func(msg string) int { return strings.Count(logBuf.String(), `msg="`+msg+`"`) }
			// The disconnection is logged once the session ends, just
			// after the client's close.
			deadline := time.Now().Add(5 * time.Second)
			for tc.logins && count("client disconnected") == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			want := 0
			if tc.logins {
				want = 1
			}
			if n := count("client logged in"); n != want {
				t.Errorf("%d login lines, want %d:\n%s", n, want, logBuf.String())
			}
			if n := count("client disconnected"); n != want {
				t.Errorf("%d disconnection lines, want %d:\n%s", n, want, logBuf.String())
			}
			var refused []string
			for _, l := range strings.Split(logBuf.String(), "\n") {
				if strings.Contains(l, `msg="client login refused"`) {
					refused = append(refused, l)
				}
			}
			if len(refused) != 2 {
				t.Fatalf("%d refusal lines, want 2 (one per refusal):\n%s", len(refused), logBuf.String())
			}
			for i, code := range []string{"28P01", "3D000"} {
				if !strings.Contains(refused[i], "sqlstate="+code) || !strings.Contains(refused[i], "addr=127.0.0.1:") ||
					!strings.Contains(refused[i], "reason=") || !strings.Contains(refused[i], "user=app") {
					t.Errorf("refusal line %q: want sqlstate=%s, the client's address, the reason and the user", refused[i], code)
				}
			}
		})
	}
}
