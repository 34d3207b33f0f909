package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SCRAM pass-through, as PgBouncer does it: the proxy holds only the
// server's SCRAM verifier of a user (here in [users], as it would be in an
// auth_file or come from auth_query), never the password. A client that
// logs in with SCRAM gives away its ClientKey in its proof; the proxy logs
// in to the server (which wants SCRAM over TCP) with it, in transaction
// mode, for each new server connection.
func TestSCRAMPassThroughToServer(t *testing.T) {
	ctx := context.Background()
	const user, password = "scramuser", "s3cret-only-the-client-knows"
	verifier := scramRole(t, user, password)
	if !strings.HasPrefix(verifier, "SCRAM-SHA-256$") {
		t.Fatalf("rolpassword %q is not a SCRAM verifier", verifier)
	}

	p := startProxy(t, proxyOptions{PoolSize: 3, DBExtra: fmt.Sprintf("\n[users.%s]\npassword = %q\n", user, verifier)})
	dsn := func(pw string) string { return p.DSN(user, pw, "appdb") }

	// Several clients, so that several server connections log in.
	var conns []*pgx.Conn
	for i := 0; i < 3; i++ {
		c, err := pgx.Connect(ctx, dsn(password))
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		conns = append(conns, c)
	}
	for i, c := range conns {
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatalf("client %d: begin: %v", i, err)
		}
		var who string
		if err := tx.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if who != user {
			t.Errorf("client %d runs as %q, want %q", i, who, user)
		}
		defer tx.Rollback(ctx)
	}

	// A wrong password is refused by the proxy, as PostgreSQL would.
	_, err := pgx.Connect(ctx, dsn("wrong"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("wrong password: %v, want 28P01", err)
	}
}

// When the server's verifier changed (the password was set again), the
// keys no longer fit: the client gets an error naming the reason instead
// of a hang or a misleading "password authentication failed".
func TestSCRAMPassThroughStaleVerifier(t *testing.T) {
	ctx := context.Background()
	const user, password = "scramstale", "first-password"
	verifier := scramRole(t, user, password)
	// Same password, set again: a new salt on the server.
	if err := pg.Exec(ctx, fmt.Sprintf(`SET password_encryption = 'scram-sha-256'; ALTER ROLE %s PASSWORD '%s'`, user, password)); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyOptions{DBExtra: fmt.Sprintf("\n[users.%s]\npassword = %q\n", user, verifier)})
	c, err := pgx.Connect(ctx, p.DSN(user, password, "appdb"))
	if err == nil {
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "SELECT 1")
	}
	if err == nil || !strings.Contains(err.Error(), "verifier") {
		t.Fatalf("login with a stale verifier: %v, want an error naming the verifier", err)
	}
}

// scramRole creates user on the test server with a SCRAM password (dropped
// when the test ends) and returns its verifier as pg_authid holds it.
func scramRole(t *testing.T, user, password string) string {
	t.Helper()
	ctx := context.Background()
	if err := pg.Exec(ctx, fmt.Sprintf(`DROP ROLE IF EXISTS %[1]s; SET password_encryption = 'scram-sha-256'; CREATE ROLE %[1]s LOGIN PASSWORD '%[2]s'`, user, password)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Exec(context.Background(), "DROP ROLE IF EXISTS "+user) })
	su, err := pgx.Connect(ctx, pg.DSN("postgres", "postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	var verifier string
	if err := su.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", user).Scan(&verifier); err != nil {
		t.Fatal(err)
	}
	return verifier
}
