package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pauseproxy/pauseproxy/internal/auth"
	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/router"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// serveConn runs one client connection from its first byte to its end.
func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	defer s.wg.Done()
	n := s.clients.Add(1)
	defer s.clients.Add(-1)
	cfg := s.conf.Load()
	px := &cfg.Proxy
	if px.ClientLoginTimeout > 0 {
		nc.SetDeadline(time.Now().Add(px.ClientLoginTimeout))
	}
	conn, st, isTLS, cb, err := s.startup(nc)
	if err != nil {
		if errors.Is(err, wire.ErrTerminate) && s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.Debug("client closed before its startup packet", slog.String("addr", nc.RemoteAddr().String()))
		}
		s.refuse(conn, err, loginInfo{})
		return
	}
	switch st.Kind {
	case wire.CancelRequest:
		// Close only once the cancel has reached the server, as
		// PostgreSQL does: a client that waits for the close (libpq,
		// pgconn) may then send its next query without the late cancel
		// hitting that one instead. The keys the proxy gives out are 4
		// bytes (it speaks protocol 3.0); a longer one is nobody's.
		if len(st.Key) == 4 {
			s.router.Cancel(router.CancelKey{PID: st.ProcessID, Secret: st.SecretKey})
		}
		nc.Close()
		return
	}
	if st.NeedsNegotiation() {
		// PostgreSQL 15's answer to a newer minor version or _pq_
		// options (ProcessStartupPacket, SendNegotiateProtocolVersion):
		// the newest version it speaks and the options it did not know,
		// then the login goes on in 3.0.
		if _, err := conn.Write(wire.AppendNegotiateProtocolVersion(nil, wire.ProtocolVersion30, st.ProtocolOptions)); err != nil {
			conn.Close()
			return
		}
	}
	user, _ := st.Get("user")
	if user == "" {
		s.refuse(conn, &router.StartError{Code: "28000", Msg: "no PostgreSQL user name specified in startup packet"}, loginInfo{})
		return
	}
	dbname, ok := st.Get("database")
	if !ok || dbname == "" {
		dbname = user
	}
	who := loginInfo{user: user, database: dbname}
	if px.MaxClientConn > 0 && n > int64(px.MaxClientConn) {
		s.refuse(conn, &router.StartError{Code: "53300", Msg: fmt.Sprintf("pauseproxy: no more connections allowed (max_client_conn %d)", px.MaxClientConn)}, who)
		return
	}
	mode := px.ClientTLS.SSLMode
	if !isTLS && (mode == "require" || mode == "verify-ca" || mode == "verify-full") {
		s.refuse(conn, &router.StartError{Code: "28000", Msg: "pauseproxy: SSL required (client_tls_sslmode " + mode + ")"}, who)
		return
	}
	// Built only when there is something to log: With formats its
	// attributes at once, a cost every new connection would pay.
	log := func() *slog.Logger {
		return s.log.With(slog.String("user", user), slog.String("database", dbname), slog.String("addr", conn.RemoteAddr().String()))
	}
	method := auth.Method(px.AuthType)
	if px.AuthType == config.AuthHBA {
		// As in PostgreSQL, the hba rules come first (for any database
		// name, existing or not, and for the admin console), then the
		// method they chose.
		method, err = hbaMethod(px.HBA, nc, isTLS, user, dbname)
		if err == nil && method == auth.MethodCert {
			err = checkCert(conn, user)
		}
		if err != nil {
			s.refuse(conn, err, who)
			return
		}
	}

	isAdmin := AdminDatabases[dbname]
	var db *router.Database
	unknownDB := false
	if !isAdmin {
		// An unknown database is said so only after authentication, as
		// PgBouncer does since 1.17: before, a client could probe for
		// database names without any password.
		db, ok = s.router.Database(dbname)
		unknownDB = !ok
		who.db = db
	}
	// Most client messages are small, and an idle client should cost
	// little memory: the reader frames them in a buffer of its own of a
	// few hundred bytes and borrows a 4 KiB one (PgBouncer's pkt_buf)
	// only for a burst or a large message. The authentication exchange
	// reads through it too, with a lower limit, so that whatever a client
	// sends right after its password stays there for the session.
	rd := wire.NewPooledReader(conn, maxAuthMessageSize, clientReadBufs)
	serverPassword, serverSCRAM, err := s.authenticate(ctx, &messageReader{rd: rd}, conn, cfg, method, user, db, unknownDB, cb)
	if err != nil {
		s.refuse(conn, err, who)
		return
	}
	if unknownDB {
		s.refuse(conn, &router.StartError{Code: "3D000", Msg: fmt.Sprintf("pauseproxy: no such database: %s", dbname)}, who)
		return
	}
	rd.SetMaxMessageSize(px.MaxMessageSize)
	rd.SetBudget(s.budget)
	if isAdmin {
		if s.admin == nil {
			s.refuse(conn, &router.StartError{Code: "08P01", Msg: "pauseproxy: admin console not available"}, who)
			return
		}
		conn.SetDeadline(time.Time{})
		s.admin.Serve(ctx, conn, rd, user)
		return
	}
	sess, err := s.router.Start(ctx, router.Login{
		Conn: conn, Reader: rd, Startup: st, DB: db, User: user,
		ServerUser: user, ServerPassword: serverPassword, ServerSCRAM: serverSCRAM,
	})
	if err != nil {
		s.refuse(conn, err, who)
		return
	}
	conn.SetDeadline(time.Time{})
	if px.LogConnections {
		// PgBouncer's log_connections: "login attempt: db=... user=...
		// tls=...".
		log().Info("client logged in", slog.Uint64("client", sess.ID), slog.Bool("tls", isTLS))
	}
	start := time.Now()
	sess.Run(ctx)
	if s.conf.Load().Proxy.LogDisconnections {
		log().Info("client disconnected", slog.Uint64("client", sess.ID), slog.Duration("age", time.Since(start)))
	}
}

// clientReadBufs lends client readers their large buffers.
var clientReadBufs = wire.NewBufferPool(4 << 10)

// startup reads the first packets: SSLRequest and GSSENCRequest are
// answered (TLS when configured, else 'N'), until a StartupMessage or
// CancelRequest arrives. It returns the connection to go on with (TLS, or
// one that first yields bytes the client sent after its StartupMessage).
//
// The packets are read through a small buffer: a client's SSLRequest and
// StartupMessage then cost a read(2) each instead of two (length, body).
func (s *Server) startup(nc net.Conn) (conn net.Conn, st *wire.Startup, isTLS bool, cb auth.ChannelBinding, err error) {
	conn = nc
	br := bufio.NewReaderSize(nc, startupBufSize)
	sslDone, gssDone := false, false
	for {
		st, err := wire.ReadStartup(br)
		if err != nil {
			return conn, nil, isTLS, cb, err
		}
		switch st.Kind {
		case wire.SSLRequest:
			if sslDone {
				return conn, nil, isTLS, cb, &wire.ProtocolError{Code: "08P01", Msg: "duplicate SSLRequest"}
			}
			sslDone = true
			tc := s.tlsConf.Load()
			if tc == nil {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return conn, nil, isTLS, cb, err
				}
				continue
			}
			if br.Buffered() > 0 {
				// Bytes sent in the clear before the handshake could be
				// taken for part of the encrypted session; PostgreSQL
				// refuses them too (CVE-2021-23214).
				return conn, nil, isTLS, cb, &wire.ProtocolError{Code: "08P01", Msg: "received unencrypted data after SSL request"}
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return conn, nil, isTLS, cb, err
			}
			t := tls.Server(conn, tc.cfg)
			if err := t.Handshake(); err != nil {
				return conn, nil, isTLS, cb, fmt.Errorf("TLS handshake: %w", err)
			}
			conn, isTLS, cb = t, true, tc.cb
			br.Reset(t)
		case wire.GSSENCRequest:
			if gssDone {
				return conn, nil, isTLS, cb, &wire.ProtocolError{Code: "08P01", Msg: "duplicate GSSENCRequest"}
			}
			gssDone = true
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return conn, nil, isTLS, cb, err
			}
		default:
			if n := br.Buffered(); n > 0 {
				// The client did not wait for our answer (a password
				// message sent ahead, say): keep those bytes.
				rest, _ := br.Peek(n)
				conn = &prefixConn{Conn: conn, prefix: bytes.Clone(rest)}
			}
			return conn, st, isTLS, cb, nil
		}
	}
}

// maxAuthMessageSize bounds a message during authentication (a password,
// a SASL response) before anything is allocated for it: PostgreSQL's
// PG_MAX_AUTH_TOKEN_LENGTH is 65535, plus the header.
const maxAuthMessageSize = 65535 + 5

// messageReader hands pgproto3 one whole message per Read from rd, so that
// its own buffered reader never reads past the message it decodes.
type messageReader struct {
	rd   *wire.Reader
	rest []byte // of the current message, aliasing rd's buffer
}

func (m *messageReader) Read(p []byte) (int, error) {
	if len(m.rest) == 0 {
		msg, err := m.rd.ReadMessage()
		if err != nil {
			return 0, err
		}
		m.rest = msg
	}
	n := copy(p, m.rest)
	m.rest = m.rest[n:]
	return n, nil
}

// startupBufSize holds a typical StartupMessage (user, database,
// application_name, a few options) in one read.
const startupBufSize = 512

// prefixConn is a connection whose first reads return prefix.
type prefixConn struct {
	net.Conn
	prefix []byte
}

// NetConn returns the wrapped connection (a *tls.Conn over TLS).
func (c *prefixConn) NetConn() net.Conn { return c.Conn }

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// authenticate checks the client's identity with the configured auth_type
// and returns the clear-text password to log in to the server with, when
// the proxy knows one.
//
// For a database that does not exist (unknownDB), the exchange runs as for
// any other: against the user's auth_file or [users] secret, so a client
// with the right password learns that the database is missing (3D000, as
// PgBouncer's finish_client_login says for its "fake" database), or
// against no secret at all (auth.Authenticate's mock exchange, which fails
// exactly like a wrong password) when the secret would come from
// auth_query: there is no database to run it in, and a fake database has
// no auth_user in PgBouncer either.
//
// method is auth_type, or what auth_hba_file chose; a client that method
// cert accepted comes here with it, as under trust.
//
// Besides the password for the server login (when the secret is a
// clear-text one), it returns the client's SCRAM keys when it logged in
// with SCRAM against a stored verifier: the server login then answers the
// server's SCRAM challenge with them (SCRAM pass-through, as PgBouncer).
func (s *Server) authenticate(ctx context.Context, r io.Reader, w io.Writer, cfg *config.Config, method auth.Method, user string, db *router.Database, unknownDB bool, cb auth.ChannelBinding) (string, router.ServerSCRAM, error) {
	// With auth_dbname, auth_query has a database to run in even for a
	// database that does not exist.
	secret, found, err := s.lookup(ctx, cfg, user, db, !unknownDB || cfg.Proxy.AuthDBName != "")
	if err != nil {
		return "", nil, &router.StartError{Code: "08006", Msg: "pauseproxy: auth_query failed: " + err.Error()}
	}
	if method == auth.MethodTrust || method == auth.MethodCert {
		if pw, ok := secret.Plain(); ok {
			return pw, nil, nil
		}
		return "", nil, nil
	}
	be := pgproto3.NewBackend(r, w)
	keys, err := auth.AuthenticateKeys(be, method, user, secret, found, cb)
	if err != nil {
		return "", nil, err
	}
	if pw, ok := secret.Plain(); ok {
		return pw, nil, nil
	}
	if keys != nil {
		return "", keys, nil
	}
	return "", nil, nil
}

// lookup finds a user's secret: a [users.<name>] password, then the
// auth_file, then (when query is true) auth_query through auth_user.
func (s *Server) lookup(ctx context.Context, cfg *config.Config, user string, db *router.Database, query bool) (auth.Secret, bool, error) {
	if u, ok := cfg.Users[user]; ok && u.Password != "" {
		return auth.ParseSecret(u.Password), true, nil
	}
	st := s.secrets.Load()
	if pw, ok := st.file[user]; ok {
		return auth.ParseSecret(pw), true, nil
	}
	px := &cfg.Proxy
	if !query || px.AuthQuery == "" || authUser(cfg, db) == "" {
		return auth.Secret{}, false, nil
	}
	return s.authQuery(ctx, cfg, user, db)
}

// authUser is the auth_user for a client of db: the database's, else the
// proxy's.
func authUser(cfg *config.Config, db *router.Database) string {
	if db != nil {
		if u := db.Config().AuthUser; u != "" {
			return u
		}
	}
	return cfg.Proxy.AuthUser
}

// authDB is the database auth_query runs in for a client of db (nil: an
// unknown database or the console): auth_dbname, the database's or the
// proxy's, as PgBouncer 1.20+; else db itself.
func (s *Server) authDB(cfg *config.Config, db *router.Database) *router.Database {
	name := cfg.Proxy.AuthDBName
	if db != nil {
		if n := db.Config().AuthDBName; n != "" {
			name = n
		}
	}
	if name != "" {
		if d, ok := s.router.Database(name); ok {
			return d
		}
	}
	return db
}

// authQuery runs auth_query as auth_user in the database the client asked
// for, as PgBouncer does (the first configured database for the admin
// console), on that database's current target: the verified primary when
// a role-change engine manages it.
func (s *Server) authQuery(ctx context.Context, cfg *config.Config, user string, db *router.Database) (auth.Secret, bool, error) {
	px := &cfg.Proxy
	asUser := authUser(cfg, db)
	db = s.authDB(cfg, db)
	if db == nil {
		for _, d := range s.router.Databases() {
			db = d
			break
		}
	}
	if db == nil {
		return auth.Secret{}, false, errors.New("no database to run auth_query in")
	}
	dc := db.Config()
	t := db.Target()
	if t.Host == "" {
		return auth.Secret{}, false, fmt.Errorf("database %s has no primary yet", db.Name)
	}
	st := s.secrets.Load()
	password := st.file[asUser]
	if u, ok := cfg.Users[asUser]; ok && u.Password != "" {
		password = u.Password
	}
	connStr := fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=prefer", quote(t.Host), t.Port, quote(dc.DBName), quote(asUser))
	pc, err := pgconn.ParseConfig(connStr)
	if err != nil {
		return auth.Secret{}, false, err
	}
	pc.Password = password
	qctx, cancel := context.WithTimeout(ctx, px.ServerConnectTimeout+5*time.Second)
	defer cancel()
	return auth.QuerySecret(qctx, pc, px.AuthQuery, user)
}

// loginInfo is what the login phase knows of a client when it refuses it:
// its user and database names once its startup packet is read, and the
// database once the name was found.
type loginInfo struct {
	user, database string
	db             *router.Database
}

// refuse sends a FATAL ErrorResponse naming the problem and closes. It
// logs the refusal once, with the client's address and the reason, and
// counts it in pauseproxy_client_errors_total (the database's when known).
func (s *Server) refuse(conn net.Conn, err error, who loginInfo) {
	defer conn.Close()
	code, msg := "08P01", ""
	var (
		se *router.StartError
		ae *auth.Error
	)
	switch {
	case errors.As(err, &se):
		code, msg = se.Code, se.Msg
	case errors.As(err, &ae):
		code, msg = ae.Code, ae.Message
		if ae.Detail != "" {
			msg += ": " + ae.Detail
		}
	case errors.Is(err, wire.ErrTerminate):
		// The client left before it started: nobody to tell.
		return
	default:
		if pe, ok := wire.IsProtocolError(err); ok {
			code, msg = pe.Code, pe.Msg
		} else {
			// The connection itself failed (EOF, timeout, TLS): there is
			// nobody to tell, but log timeouts, which PgBouncer reports
			// as client_login_timeout.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.logs.Log(slog.LevelInfo, "login timeout", "client login timed out", slog.String("addr", conn.RemoteAddr().String()))
				if who.db != nil {
					who.db.CountClientError("08P01")
				} else {
					s.router.CountLoginError("08P01")
				}
				conn.SetWriteDeadline(time.Now().Add(time.Second))
				conn.Write(wire.AppendError(nil, wire.SeverityFatal, "08P01", "pauseproxy: client_login_timeout"))
			}
			return
		}
	}
	attrs := []slog.Attr{slog.String("addr", conn.RemoteAddr().String()), slog.String("sqlstate", code), slog.String("reason", msg)}
	if who.user != "" {
		attrs = append(attrs, slog.String("user", who.user), slog.String("database", who.database))
	}
	// The first of its kind (database and SQLSTATE) at once, then one
	// line per interval with the count (logagg): ten thousand refusals of
	// one kind do not make ten thousand lines.
	s.logs.Log(slog.LevelInfo, "refused "+who.database+" "+code, "client login refused", attrs...)
	if who.db != nil {
		who.db.CountClientError(code)
	} else {
		s.router.CountLoginError(code)
	}
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	conn.Write(wire.AppendError(nil, wire.SeverityFatal, code, msg))
}

// presented is the certificate the proxy presents with tc, for SCRAM's
// channel binding; nil if it cannot be read.
func presented(tc *tls.Config) *x509.Certificate {
	if len(tc.Certificates) == 0 || len(tc.Certificates[0].Certificate) == 0 {
		return nil
	}
	if leaf := tc.Certificates[0].Leaf; leaf != nil {
		return leaf
	}
	leaf, err := x509.ParseCertificate(tc.Certificates[0].Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

func loadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificates found", path)
	}
	return p, nil
}

// secretStore holds the parsed auth_file.
type secretStore struct {
	file map[string]string
}

func loadSecrets(cfg *config.Config) (*secretStore, error) {
	st := &secretStore{file: map[string]string{}}
	if cfg.Proxy.AuthFile == "" {
		return st, nil
	}
	m, err := config.ParseAuthFile(cfg.Proxy.AuthFile)
	if err != nil {
		return nil, err
	}
	st.file = m
	return st, nil
}

// quote quotes a value for a libpq keyword/value connection string.
func quote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
