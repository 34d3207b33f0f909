package auth

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const pgbouncerQuery = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1"

// startAuthDB starts a fake database for auth_query: it authenticates the
// auth_user "pgbouncer" (password "authpw") with SCRAM and answers the
// query from a small pg_shadow.
func startAuthDB(t *testing.T) (*testServer, *pgconn.Config) {
	t.Helper()
	db := startServer(t, MethodSCRAM, map[string]Secret{"pgbouncer": ParseSecret("authpw")})
	columns := []string{"usename", "passwd"}
	db.setQuery(func(sql, user string) ([]string, [][][]byte, string) {
		if sql != pgbouncerQuery {
			return nil, nil, "42601"
		}
		row := func(user string, password []byte) [][]byte { return [][]byte{[]byte(user), password} }
		switch user {
		case "alice":
			return columns, [][][]byte{row(user, []byte(md5Hash("pw", "alice")))}, ""
		case "nopw":
			return columns, [][][]byte{row(user, nil)}, ""
		case "dup":
			return columns, [][][]byte{row(user, []byte("a")), row(user, []byte("b"))}, ""
		case "onecol":
			return columns[:1], [][][]byte{{[]byte(user)}}, ""
		case "denied":
			return nil, nil, "42501"
		default:
			return columns, nil, ""
		}
	})
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=pgbouncer password=authpw dbname=postgres sslmode=disable", db.port()))
	if err != nil {
		t.Fatal(err)
	}
	return db, cfg
}

func TestQuerySecret(t *testing.T) {
	db, cfg := startAuthDB(t)
	tests := []struct {
		user    string
		kind    secretKind
		found   bool
		wantErr string
	}{
		{user: "alice", kind: kindMD5, found: true},
		{user: "nopw", kind: kindNone, found: true},
		{user: "nobody", kind: kindNone, found: false},
		{user: "dup", wantErr: "want at most 1 row, got 2"},
		{user: "onecol", wantErr: "want 2 columns (user name, password), got 1"},
		{user: "denied", wantErr: "SQLSTATE 42501"},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			secret, found, err := QuerySecret(ctx, cfg, pgbouncerQuery, tt.user)
			if authErr := db.result(t); authErr != nil {
				t.Fatalf("auth_user login: %v", authErr)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || found != tt.found || secret.kind != tt.kind {
				t.Fatalf("QuerySecret = %v, %v, %v; want kind %d, found %v", secret, found, err, tt.kind, tt.found)
			}
		})
	}

	t.Run("bad auth_user password", func(t *testing.T) {
		bad := cfg.Copy()
		bad.Password = "wrong"
		_, _, err := QuerySecret(context.Background(), bad, pgbouncerQuery, "alice")
		assertAuthError(t, db.result(t), CodeInvalidPassword, `password authentication failed for user "pgbouncer"`)
		if err == nil || !strings.Contains(err.Error(), `connect as "pgbouncer"`) {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestQuerySecretConn: one connection serves several lookups, and a failed
// query leaves it usable.
func TestQuerySecretConn(t *testing.T) {
	db, cfg := startAuthDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := db.result(t); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"alice", "denied", "alice"} {
		_, found, err := QuerySecretConn(ctx, conn, pgbouncerQuery, user)
		if (user == "alice") != (found && err == nil) {
			t.Fatalf("%s: found %v, err %v", user, found, err)
		}
	}
}

// TestAuthQueryLogin: a proxy looks the client's secret up with auth_query
// and authenticates the client against it.
func TestAuthQueryLogin(t *testing.T) {
	db, cfg := startAuthDB(t)
	proxy := startServer(t, MethodMD5, nil)
	proxy.setLookup(func(user string) (Secret, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		secret, found, err := QuerySecret(ctx, cfg, pgbouncerQuery, user)
		if err != nil {
			return Secret{}, false // the test sees it as a failed login
		}
		return secret, found
	})
	if got := loginPgconn(t, proxy.port(), "alice", "pw"); !got.ok {
		t.Fatalf("login: %+v", got)
	}
	if err := db.result(t); err != nil {
		t.Fatal(err)
	}
	if err := proxy.result(t); err != nil {
		t.Fatal(err)
	}
}
