package proxy

import (
	"crypto/tls"
	"net"

	"github.com/pauseproxy/pauseproxy/internal/auth"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// hbaMethod finds the authentication method auth_hba_file gives a client
// that connected on nc. No matching line, or a reject line, refuses it with
// PostgreSQL's 28000 and message (ClientAuthentication in
// src/backend/libpq/auth.c), which name the host, user, database and
// encryption.
func hbaMethod(h *auth.HBA, nc net.Conn, isTLS bool, user, dbname string) (auth.Method, error) {
	c := auth.HBAClient{Local: nc.LocalAddr().Network() == "unix", TLS: isTLS, Database: dbname, User: user}
	host := "[local]"
	if !c.Local {
		if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
			c.Addr = ta.AddrPort().Addr().Unmap()
			host = c.Addr.String()
		}
	}
	encryption := "no encryption"
	if isTLS {
		encryption = "SSL encryption"
	}
	var r auth.HBARule
	ok := h != nil
	if ok {
		r, ok = h.Match(c)
	}
	switch {
	case !ok:
		return "", &router.StartError{Code: "28000", Msg: "no pg_hba.conf entry for " + hbaWho(host, user, dbname, encryption)}
	case r.Method == auth.MethodReject:
		return "", &router.StartError{Code: "28000", Msg: "pg_hba.conf rejects connection for " + hbaWho(host, user, dbname, encryption)}
	}
	return r.Method, nil
}

// checkCert is hba method cert: the client's TLS certificate, verified
// against client_tls_ca_file during the handshake, must name the user as
// its Common Name (PostgreSQL's CheckCertAuth without a user name map).
func checkCert(conn net.Conn, user string) error {
	st, ok := tlsState(conn)
	if !ok || len(st.VerifiedChains) == 0 {
		return &router.StartError{Code: "28000", Msg: "connection requires a valid client certificate"}
	}
	if st.PeerCertificates[0].Subject.CommonName != user {
		return &router.StartError{Code: "28000", Msg: `certificate authentication failed for user "` + user + `"`}
	}
	return nil
}

// tlsState sees through the login's wrapper connections to the TLS one.
func tlsState(c net.Conn) (tls.ConnectionState, bool) {
	for {
		switch t := c.(type) {
		case *tls.Conn:
			return t.ConnectionState(), true
		case interface{ NetConn() net.Conn }:
			c = t.NetConn()
		default:
			return tls.ConnectionState{}, false
		}
	}
}

// hbaWho is the end of PostgreSQL's hba messages, its quoting included.
func hbaWho(host, user, dbname, encryption string) string {
	return `host "` + host + `", user "` + user + `", database "` + dbname + `", ` + encryption
}
