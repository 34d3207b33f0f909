package proxy_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// A client cannot learn which databases exist without a password, as with
// PgBouncer since 1.17: a wrong password or an unknown user fails the same
// way whether the database exists or not (28P01, PostgreSQL's message);
// only a client that authenticated hears that the database is missing
// (3D000). Under trust there is nothing to protect, and 3D000 comes at once.
func TestDatabaseProbing(t *testing.T) {
	ctx := context.Background()
	type attempt struct {
		name, user, password, db string
		code, msg                string // msg "" for any
	}
	failed := func(user string) string { return `password authentication failed for user "` + user + `"` }
	for _, authType := range []string{"scram-sha-256", "md5", "plain", "trust"} {
		t.Run(authType, func(t *testing.T) {
			p := startProxy(t, proxyOptions{AuthType: authType})
			attempts := []attempt{
				{name: "right password, unknown database", user: "app", password: "apppass", db: "nosuchdb", code: "3D000", msg: "pauseproxy: no such database: nosuchdb"},
			}
			if authType != "trust" {
				attempts = append(attempts,
					attempt{name: "wrong password, unknown database", user: "app", password: "nope", db: "nosuchdb", code: "28P01", msg: failed("app")},
					attempt{name: "wrong password, known database", user: "app", password: "nope", db: "appdb", code: "28P01", msg: failed("app")},
					attempt{name: "unknown user, unknown database", user: "ghost", password: "nope", db: "nosuchdb", code: "28P01", msg: failed("ghost")},
					attempt{name: "unknown user, known database", user: "ghost", password: "nope", db: "appdb", code: "28P01", msg: failed("ghost")},
				)
			}
			for _, a := range attempts {
				_, err := pgconn.Connect(ctx, p.DSN(a.user, a.password, a.db))
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != a.code || (a.msg != "" && pe.Message != a.msg) {
					t.Errorf("%s: want %s %q, got %v", a.name, a.code, a.msg, err)
				}
			}
		})
	}
}
