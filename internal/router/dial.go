package router

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pool"
)

// serverLogin is who the proxy logs in as on the server.
type serverLogin struct {
	User     string
	Password string
	DBName   string
	SCRAM    ServerSCRAM // scrampass.go
}

// pgconnConfig builds the pgconn configuration for one target. It goes
// through a keyword/value string so that pgconn sets up TLS exactly as
// libpq's sslmode would, then pins every field so the environment (PGHOST,
// PGPASSWORD, ...) cannot leak in.
func pgconnConfig(t pool.Target, login serverLogin, tlsCfg config.TLS, appName string) (*pgconn.Config, error) {
	var b strings.Builder
	kv := func(k, v string) {
		b.WriteString(k)
		b.WriteString("='")
		b.WriteString(strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v))
		b.WriteString("' ")
	}
	kv("host", t.Host)
	kv("port", strconv.Itoa(t.Port))
	kv("user", login.User)
	kv("dbname", login.DBName)
	mode := tlsCfg.SSLMode
	if mode == "" {
		mode = "prefer"
	}
	if strings.HasPrefix(t.Host, "/") {
		mode = "disable"
	}
	kv("sslmode", mode)
	if tlsCfg.CAFile != "" {
		kv("sslrootcert", tlsCfg.CAFile)
	}
	if tlsCfg.CertFile != "" {
		kv("sslcert", tlsCfg.CertFile)
		kv("sslkey", tlsCfg.KeyFile)
	}
	cfg, err := pgconn.ParseConfig(b.String())
	if err != nil {
		return nil, fmt.Errorf("server connection settings for %s:%d: %w", t.Host, t.Port, err)
	}
	cfg.Password = login.Password
	scramPassThrough(cfg, login)
	cfg.RuntimeParams = map[string]string{}
	if appName != "" {
		cfg.RuntimeParams["application_name"] = appName
	}
	cfg.ConnectTimeout = 0 // the pool's context carries server_connect_timeout
	return cfg, nil
}

// dialServer connects and authenticates with pgconn, then takes the raw
// connection over (Hijack): from here on the proxy drives the protocol.
// check, when not nil, runs on the connection first (a replica's role).
func dialServer(ctx context.Context, cfg *pgconn.Config, requireWritable bool, check func(context.Context, *pgconn.PgConn) error) (*pool.Server, error) {
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(ctx, pc); err != nil {
			pc.Close(ctx)
			return nil, err
		}
	}
	if requireWritable {
		writable, err := isWritable(ctx, pc)
		if err != nil {
			pc.Close(ctx)
			return nil, err
		}
		if !writable {
			pc.Close(ctx)
			return nil, &NotWritableError{Addr: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))}
		}
	}
	// SyncConn makes sure pgconn's background reader (started when a
	// login write is slow) is stopped; otherwise it stays blocked on the
	// socket and swallows the server's first answer after Hijack.
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("sync server connection: %w", err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("take over server connection: %w", err)
	}
	srv := &pool.Server{
		Conn:      hj.Conn,
		PID:       hj.PID,
		SecretKey: hj.SecretKey,
		Params:    hj.ParameterStatuses,
	}
	// Remember how to reach the same server for a CancelRequest, over
	// the same kind of connection (TLS when the session used it).
	srv.Network, srv.Address = "tcp", net.JoinHostPort(hj.Config.Host, strconv.Itoa(int(hj.Config.Port)))
	if strings.HasPrefix(hj.Config.Host, "/") {
		srv.Network, srv.Address = "unix", fmt.Sprintf("%s/.s.PGSQL.%d", hj.Config.Host, hj.Config.Port)
	}
	if isTLS(hj.Conn) {
		srv.TLS = hj.Config.TLSConfig
	}
	return srv, nil
}

// NotWritableError is a server that is in recovery (a replica, or a
// primary not yet promoted) where a writable primary was required.
type NotWritableError struct{ Addr string }

func (e *NotWritableError) Error() string {
	return "server " + e.Addr + " is not writable (pg_is_in_recovery() = true)"
}

// isWritable asks a server whether it accepts writes, as libpq's
// target_session_attrs=read-write does.
func isWritable(ctx context.Context, pc *pgconn.PgConn) (bool, error) {
	res, err := pc.Exec(ctx, "SELECT pg_catalog.pg_is_in_recovery()").ReadAll()
	if err != nil {
		return false, fmt.Errorf("check pg_is_in_recovery(): %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return false, errors.New("check pg_is_in_recovery(): unexpected result")
	}
	return string(res[0].Rows[0][0]) == "f", nil
}

// classifyLogin wraps a failed server login in a pool.LoginError that says
// whether waiting can heal it (see loginCanWait). A server that is not
// writable, and a dial abandoned because its context ended, stay as they
// are: the first is a role-change matter, the second nobody's refusal.
func classifyLogin(err error) error {
	var nw *NotWritableError
	var nr *NotReplicaError
	if err == nil || errors.As(err, &nw) || errors.As(err, &nr) || errors.Is(err, context.Canceled) {
		return err
	}
	return &pool.LoginError{Err: err, Wait: loginCanWait(err)}
}

// loginCanWait tells refusals that heal by waiting from those that do
// not. SQLSTATEs from PostgreSQL's Appendix A: class 53 (insufficient
// resources: 53300 too_many_connections, also "too many connections for
// role") and 57P01-57P03 (shutting down, starting up) heal; anything else
// the server answers at login (28P01 invalid password, 28000 no pg_hba
// entry, 3D000 no such database, 42501 no CONNECT privilege) does not. A
// certificate that does not verify does not either; a refused, reset or
// timed-out connection (a restart) does. Anything else the driver reports
// (an authentication method it does not support, TLS refused by the
// server) is a setting to fix, not a moment to wait out.
func loginCanWait(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "53") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		alert     tls.AlertError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &alert) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}
