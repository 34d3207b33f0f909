package proxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
)

// TestTLSBothSides runs a client over TLS to the proxy (client_tls_sslmode
// require) and the proxy over TLS to a server that accepts it
// (server_tls_sslmode require), and cancels a query through both.
func TestTLSBothSides(t *testing.T) {
	srv := pgtest.Require(t, pgtest.Options{AuthMethod: "scram-sha-256", SSL: true})
	ctx := context.Background()
	if err := srv.Exec(ctx, `CREATE ROLE app LOGIN PASSWORD 'apppass'`); err != nil {
		t.Fatal(err)
	}
	// The cluster's certificate (it names localhost/127.0.0.1) serves the
	// proxy's client side too.
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "proxy.crt"), filepath.Join(dir, "proxy.key")
	copyFile(t, srv.CertFile, cert)
	copyFile(t, srv.KeyFile, key)
	p := startProxy(t, proxyOptions{
		Extra: fmt.Sprintf("client_tls_sslmode = \"require\"\nclient_tls_cert_file = %q\nclient_tls_key_file = %q\nserver_tls_sslmode = \"verify-ca\"\nserver_tls_ca_file = %q",
			cert, key, srv.CAFile),
		DBExtra:    "dbname = \"postgres\"\n",
		ServerPort: srv.Port,
	})

	// Without TLS the proxy refuses.
	_, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://app:apppass@%s/appdb?sslmode=disable", p.Addr))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28000" {
		t.Fatalf("plain connection: want 28000 SSL required, got %v", err)
	}
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app:apppass@%s/appdb?sslmode=verify-ca&sslrootcert=%s", p.Addr, srv.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var ssl bool
	if err := c.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
		t.Fatal(err)
	}
	if !ssl {
		t.Fatal("the proxy's server connection is not TLS")
	}
	// A cancel reaches the server over TLS too.
	var start time.Time
	time.AfterFunc(300*time.Millisecond, func() {
		start = time.Now()
		c.PgConn().CancelRequest(ctx)
	})
	_, err = c.Exec(ctx, "SELECT pg_sleep(30)")
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("want 57014, got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cancel took %s", d)
	}
}

func TestGSSENCRequestAnsweredN(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	conn, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := binary.BigEndian.AppendUint32(nil, 8)
	req = binary.BigEndian.AppendUint32(req, 80877104)
	conn.Write(req)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil || b[0] != 'N' {
		t.Fatalf("want 'N', got %q %v", b, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestChannelBindingRealClients: over TLS the proxy offers
// SCRAM-SHA-256-PLUS, as PostgreSQL does, so clients that require channel
// binding (libpq's and pgx's channel_binding=require) log in; without TLS
// they are refused by their own driver, never downgraded.
func TestChannelBindingRealClients(t *testing.T) {
	cert, key := proxyCert(t)
	p := startProxy(t, proxyOptions{
		Extra: fmt.Sprintf("client_tls_sslmode = \"allow\"\nclient_tls_cert_file = %q\nclient_tls_key_file = %q", cert, key),
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app:apppass@%s/appdb?sslmode=require&channel_binding=require", p.Addr))
	if err != nil {
		t.Fatalf("pgx with channel_binding=require: %v", err)
	}
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("query: %d, %v", one, err)
	}
	c.Close(ctx)

	psql := func(conninfo string) (string, error) {
		cmd := exec.CommandContext(ctx, "psql", "-X", "-At", "-c", "SELECT 'bound'", conninfo)
		cmd.Env = append(os.Environ(), "PGPASSWORD=apppass")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := psql(fmt.Sprintf("host=127.0.0.1 port=%d user=app dbname=appdb sslmode=require channel_binding=require", p.Port)); err != nil || strings.TrimSpace(out) != "bound" {
		t.Fatalf("psql with channel_binding=require: %v\n%s", err, out)
	}
	// Without TLS there is nothing to bind to: libpq refuses by itself.
	if out, err := psql(fmt.Sprintf("host=127.0.0.1 port=%d user=app dbname=appdb sslmode=disable channel_binding=require", p.Port)); err == nil || !strings.Contains(out, "channel binding") {
		t.Fatalf("psql without TLS but channel_binding=require: %v\n%s", err, out)
	}
}

// proxyCert writes a certificate for localhost and 127.0.0.1, signed by a
// throwaway CA, and its key, for the proxy's client side.
func proxyCert(t *testing.T) (cert, key string) {
	t.Helper()
	ca, err := pgtest.NewCA("pauseproxy test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("localhost")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "proxy.crt"), filepath.Join(dir, "proxy.key")
	if err := os.WriteFile(cert, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}
