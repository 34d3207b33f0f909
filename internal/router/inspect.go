package router

import (
	"net"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/pool"
)

// This file is the read-only view of sessions for the admin console (SHOW
// CLIENTS, SHOW POOLS, PAUSE's wait) and its two ways to end one
// (KILL_CLIENT, KILL). Nothing here runs on the path of a transaction.

// SessionInfo is a snapshot of a session.
type SessionInfo struct {
	// State is "active" (a server is bound), "idle" or "waiting" (for a
	// server connection, in a hold or a full pool).
	State string
	// Server is the bound server connection, nil when none is.
	Server *pool.Conn
	// Pool is the pool the session takes its server connections from.
	Pool *pool.Pool
	// XactStart is when the session last got a server connection (the
	// start of its current or last transaction); zero before the first.
	XactStart time.Time
	// WaitStart is when the session began waiting, zero unless State is
	// "waiting".
	WaitStart  time.Time
	LocalAddr  net.Addr
	RemoteAddr net.Addr
	TLS        bool
}

// Info returns a snapshot of the session.
func (s *Session) Info() SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var waitStart time.Time
	if s.phase == phaseWaiting || s.phase == phaseRetrying {
		waitStart = s.waitStart
	}
	return SessionInfo{
		State:      s.phase.String(),
		WaitStart:  waitStart,
		Server:     s.bnd.server,
		Pool:       s.pool,
		XactStart:  s.lastStart,
		LocalAddr:  s.cc.LocalAddr(),
		RemoteAddr: s.cc.RemoteAddr(),
		TLS:        isTLS(s.cc),
	}
}

// Database returns the database the session is connected to.
func (s *Session) Database() *Database { return s.db }

// Kill ends the session the way an administrator's pg_terminate_backend
// does: the client gets a FATAL ErrorResponse with SQLSTATE 57P01 and msg,
// and its connection is closed. A transaction in flight is lost: its server
// connection is closed rather than reused (see end).
func (s *Session) Kill(msg string) {
	s.fatalClient("57P01", msg)
}

// SessionsOf returns the logged-in sessions of database name, sorted by ID.
func (r *Router) SessionsOf(name string) []*Session {
	var out []*Session
	for _, s := range r.Sessions() {
		if s.DBName == name {
			out = append(out, s)
		}
	}
	return out
}
