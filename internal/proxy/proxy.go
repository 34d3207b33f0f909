// Package proxy owns the client listeners and the login phase: it accepts
// TCP and Unix-socket connections, answers SSLRequest/GSSENCRequest, routes
// CancelRequest (to the router, which forwards other peers' keys), answers
// a newer protocol version with NegotiateProtocolVersion, enforces
// max_client_conn and client_login_timeout, picks the method
// (auth_type, or the auth_hba_file line that matches), authenticates the
// client (internal/auth), and hands it to the router (a database) or to the
// admin console (the virtual database "pgbouncer", alias "pauseproxy").
//
// It does not forward queries or keep pools; after login the connection
// belongs to the router's Session or to the admin console.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/auth"
	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/logagg"
	"github.com/pauseproxy/pauseproxy/internal/router"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// AdminConsole serves a client that logged in to the admin database.
type AdminConsole interface {
	// Serve runs the console session until the client leaves. user is the
	// authenticated user name; the console checks admin_users/stats_users.
	Serve(ctx context.Context, conn net.Conn, rd *wire.Reader, user string)
}

// AdminDatabases are the virtual database names of the admin console.
var AdminDatabases = map[string]bool{"pgbouncer": true, "pauseproxy": true}

// Server accepts clients for a router.
type Server struct {
	log    *slog.Logger
	router *router.Router
	admin  AdminConsole

	conf    atomic.Pointer[config.Config]
	tlsConf atomic.Pointer[clientTLSConf]
	secrets atomic.Pointer[secretStore]
	clients atomic.Int64 // connected clients, logging in or logged in
	// budget bounds the client messages held whole at once
	// (large_message_budget, wire.Budget).
	budget *wire.Budget
	// logs folds repeated login failures (timeouts, refusals) into one
	// line per kind per interval with a count.
	logs *logagg.Aggregator

	mu        sync.Mutex
	listeners []net.Listener
	accepting bool
	wg        sync.WaitGroup
}

// New returns a server for cfg. It loads the client TLS certificate and
// the auth_file.
func New(cfg *config.Config, r *router.Router, admin AdminConsole, log *slog.Logger) (*Server, error) {
	s := &Server{log: log, router: r, admin: admin, budget: wire.NewBudget(int64(cfg.Proxy.LargeMessageBudget)),
		logs: logagg.New(log, logagg.DefaultInterval)}
	if err := s.Reload(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload applies a new configuration to the login phase (TLS, auth_file,
// limits). Listeners keep their addresses; changing them needs a restart,
// as in PgBouncer.
func (s *Server) Reload(cfg *config.Config) error {
	tc, err := clientTLSWithBinding(cfg.Proxy.ClientTLS, s.log)
	if err != nil {
		return err
	}
	st, err := loadSecrets(cfg)
	if err != nil {
		return err
	}
	s.conf.Store(cfg)
	if s.budget != nil {
		s.budget.SetMax(int64(cfg.Proxy.LargeMessageBudget))
	}
	s.tlsConf.Store(tc)
	s.secrets.Store(st)
	return nil
}

// Listen opens a TCP listener for each address of listen_addr (see
// listenTCP) and the Unix socket <unix_socket_dir>/.s.PGSQL.<port>. It
// opens all or none.
func (s *Server) Listen() error {
	cfg := s.conf.Load()
	px := cfg.Proxy
	ls, err := listenTCP(context.Background(), cfg.File, px.ListenAddrs, px.ListenPort)
	if err != nil {
		return err
	}
	if px.UnixSocketDir != "" {
		path := filepath.Join(px.UnixSocketDir, ".s.PGSQL."+strconv.Itoa(px.ListenPort))
		// A socket file left by a crashed process would block the bind;
		// remove it only if nothing answers on it.
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			closeAll(ls)
			return fmt.Errorf("listen on %s: another process is serving it", path)
		}
		os.Remove(path)
		l, err := net.Listen("unix", path)
		if err != nil {
			closeAll(ls)
			return fmt.Errorf("listen on %s: %w", path, err)
		}
		os.Chmod(path, 0o777)
		ls = append(ls, l)
	}
	if len(ls) == 0 {
		return errors.New("no listener configured: set listen_addr or unix_socket_dir")
	}
	s.mu.Lock()
	s.listeners = ls
	s.accepting = true
	s.mu.Unlock()
	return nil
}

// Addrs returns the listening addresses (after Listen).
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for _, l := range s.listeners {
		out = append(out, l.Addr())
	}
	return out
}

// Serve accepts clients until StopAccepting or ctx is done. Each client's
// session runs until it leaves or ctx (the hard stop) is done.
func (s *Server) Serve(ctx context.Context) {
	s.mu.Lock()
	ls := s.listeners
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.acceptLoop(ctx, l)
		}()
	}
	stop := context.AfterFunc(ctx, s.StopAccepting)
	defer stop()
	wg.Wait()
}

func (s *Server) acceptLoop(ctx context.Context, l net.Listener) {
	backoff := 5 * time.Millisecond
	for {
		nc, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry
			// rather than spin (net/http does the same).
			s.log.Warn("accept failed", slog.Any("err", err))
			time.Sleep(backoff)
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		s.wg.Add(1)
		go s.serveConn(ctx, nc)
	}
}

// StopAccepting closes the listeners; connected clients stay. Safe to call
// twice.
func (s *Server) StopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.accepting {
		return
	}
	s.accepting = false
	closeAll(s.listeners)
}

// Accepting reports whether the listeners are open.
func (s *Server) Accepting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepting
}

// Wait blocks until every client goroutine has ended.
func (s *Server) Wait() {
	s.wg.Wait()
	s.logs.Close()
}

// Clients is the number of connected clients.
func (s *Server) Clients() int64 { return s.clients.Load() }

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		l.Close()
	}
}

// clientTLSConf is what the proxy offers clients over TLS: the TLS
// settings and the channel binding of the certificate it presents
// (SCRAM-SHA-256-PLUS), computed once per load of the configuration.
type clientTLSConf struct {
	cfg *tls.Config
	cb  auth.ChannelBinding
}

// clientTLSWithBinding is clientTLS and the channel binding of its
// certificate; nil when clients are offered no TLS. Without a binding
// (a certificate whose hash RFC 5929 cannot choose), SCRAM-SHA-256-PLUS
// is not offered; plain SCRAM still is.
func clientTLSWithBinding(t config.TLS, log *slog.Logger) (*clientTLSConf, error) {
	tc, err := clientTLS(t)
	if err != nil || tc == nil {
		return nil, err
	}
	cb, err := auth.TLSServerEndPoint(presented(tc))
	if err != nil {
		log.Warn("SCRAM-SHA-256-PLUS not offered: no channel binding for client_tls_cert_file", slog.Any("err", err))
	}
	return &clientTLSConf{cfg: tc, cb: cb}, nil
}

func clientTLS(t config.TLS) (*tls.Config, error) {
	if t.SSLMode == "" || t.SSLMode == "disable" || t.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("client_tls_cert_file/client_tls_key_file: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pool, err := loadCertPool(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("client_tls_ca_file: %w", err)
		}
		tc.ClientCAs = pool
		// Below verify-ca a certificate is asked for, not required, as
		// PgBouncer does: one given is verified, for hba method cert.
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if t.SSLMode == "verify-ca" || t.SSLMode == "verify-full" {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return tc, nil
}
