package router

import (
	"encoding/binary"
	"io"
	"maps"
	"sync"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Errors sent to clients, by SQLSTATE, for pauseproxy_client_errors_total.
//
// Every ErrorResponse a client receives after login passes through its
// clientWriter, forwarded from a server or made by the proxy (a hold that
// timed out, a lost server, a stale statement, a timeout). Rather than a
// call at each of those places, the writer's underlying connection is
// wrapped in an errorScanner that follows the message framing of the bytes
// handed to the connection (what a retry rolled back never reaches it) and counts
// each ErrorResponse's 'C' field. It reads only the 5-byte headers of
// other messages and keeps no buffer: a few integers per session.
//
// Errors of the login phase (wrong password, unknown database, too many
// clients) are written by package proxy, which counts them through
// Database.CountClientError and Router.CountLoginError.
//
// Labels stay bounded: the full code for the SQLSTATEs an operator acts on
// (knownSQLStates), the class ("42XXX") for any other code, "other" for
// something that is not a SQLSTATE at all.

// knownSQLStates are reported with their full code (PostgreSQL docs,
// Appendix A "PostgreSQL Error Codes"): what a pooler, a role change or an
// application bug typically produces.
var knownSQLStates = map[string]bool{
	// Connections and the protocol.
	"08000": true, "08001": true, "08003": true, "08004": true, "08006": true, "08P01": true,
	// Server going away, cancels, timeouts.
	"57P01": true, "57P02": true, "57P03": true, "57P04": true, "57P05": true, "57014": true,
	// Transactions: read-only (a demoted primary), aborted, idle and
	// transaction timeouts.
	"25001": true, "25006": true, "25P01": true, "25P02": true, "25P03": true, "25P04": true,
	// Retryable conflicts.
	"40001": true, "40P01": true,
	// Resources and limits.
	"53000": true, "53100": true, "53200": true, "53300": true, "53400": true, "54000": true,
	// Login.
	"28000": true, "28P01": true, "3D000": true,
	// Integrity.
	"23502": true, "23503": true, "23505": true, "23514": true, "23P01": true,
	// Statements and prepared statements.
	"42601": true, "42501": true, "42P01": true, "42703": true, "42883": true, "42P05": true,
	"26000": true, "34000": true, "0A000": true,
	// Data.
	"22001": true, "22003": true, "22012": true, "22P02": true,
	// Locks.
	"55P03": true, "55006": true,
	// Server internals.
	"XX000": true, "XX001": true, "XX002": true,
}

// SQLStateLabel is the label a SQLSTATE is counted under: the code itself
// when it is one of the known ones, its class ("42XXX") otherwise, "other"
// when code is not a SQLSTATE.
func SQLStateLabel(code string) string {
	if knownSQLStates[code] {
		return code
	}
	if len(code) != 5 {
		return "other"
	}
	for i := 0; i < 5; i++ {
		c := code[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z') {
			return "other"
		}
	}
	return code[:2] + "XXX"
}

// ErrorCounts counts errors by SQLSTATE label. The zero value is ready to
// use; safe for concurrent use.
type ErrorCounts struct {
	mu sync.Mutex // guards m
	m  map[string]uint64
}

// Add counts one error with SQLSTATE code.
func (c *ErrorCounts) Add(code string) {
	label := SQLStateLabel(code)
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]uint64)
	}
	c.m[label]++
	c.mu.Unlock()
}

// Snapshot returns the counts by label.
func (c *ErrorCounts) Snapshot() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m)
}

// CountClientError counts an ErrorResponse with SQLSTATE code sent to a
// client of the database outside a session (package proxy: a login
// refused after the database was known).
func (d *Database) CountClientError(code string) { d.stats.ClientErrors.Add(code) }

// CountLoginError counts an ErrorResponse sent to a client whose login was
// refused before it named a known database (no user, bad password, an
// unknown database, max_client_conn).
func (r *Router) CountLoginError(code string) { r.loginErrors.Add(code) }

// LoginErrors returns what CountLoginError counted.
func (r *Router) LoginErrors() map[string]uint64 { return r.loginErrors.Snapshot() }

// errorScanner passes writes through to w and counts the ErrorResponses in
// the byte stream. Only its Write is used, by one clientWriter at a time
// (under Session.wmu).
type errorScanner struct {
	w      io.Writer
	counts *ErrorCounts

	hdr    [5]byte // header of the next message, nhdr bytes of it so far
	nhdr   int
	remain int  // body bytes of the current message still to come
	broken bool // the framing made no sense: stop counting

	// Within an ErrorResponse body: fields are a type byte and a
	// NUL-terminated value (PostgreSQL docs 55.8).
	isErr   bool
	atField bool // the next byte is a field type
	fieldC  bool // inside the 'C' field
	code    [5]byte
	ncode   int
	counted bool
}

// countErrors wraps the connection a session writes to its client.
func countErrors(w io.Writer, d *Database) io.Writer {
	return &errorScanner{w: w, counts: &d.stats.ClientErrors}
}

// Write counts before it writes, so that a client that has received an
// error finds it counted (a scrape right after sees it). An error whose
// write fails (a client gone) still counts: it was sent to the client as
// far as the proxy could.
func (e *errorScanner) Write(p []byte) (int, error) {
	if !e.broken {
		e.scan(p)
	}
	return e.w.Write(p)
}

// scan follows the framing of p, which continues what earlier writes
// carried.
func (e *errorScanner) scan(p []byte) {
	for len(p) > 0 {
		if e.remain == 0 {
			k := copy(e.hdr[e.nhdr:], p)
			e.nhdr += k
			p = p[k:]
			if e.nhdr < 5 {
				return
			}
			e.nhdr = 0
			length := int(binary.BigEndian.Uint32(e.hdr[1:]))
			if length < 4 {
				e.broken = true
				return
			}
			e.remain = length - 4
			e.isErr = e.hdr[0] == wire.MsgErrorResponse
			e.atField, e.fieldC, e.ncode, e.counted = true, false, 0, false
			if e.remain == 0 {
				e.endMessage()
			}
			continue
		}
		k := min(len(p), e.remain)
		if e.isErr && !e.counted {
			e.fields(p[:k])
		}
		p = p[k:]
		e.remain -= k
		if e.remain == 0 {
			e.endMessage()
		}
	}
}

// fields looks for the 'C' field in a piece of an ErrorResponse body.
func (e *errorScanner) fields(b []byte) {
	for _, c := range b {
		switch {
		case e.atField:
			if c == 0 { // the terminator: no more fields
				e.finish()
				return
			}
			e.atField, e.fieldC = false, c == 'C'
		case c == 0:
			if e.fieldC {
				e.finish()
				return
			}
			e.atField = true
		case e.fieldC:
			if e.ncode < len(e.code) {
				e.code[e.ncode] = c
			}
			e.ncode++
		}
	}
}

func (e *errorScanner) endMessage() {
	if e.isErr && !e.counted {
		e.finish()
	}
	e.isErr = false
}

// finish counts the current ErrorResponse once.
func (e *errorScanner) finish() {
	if e.counted {
		return
	}
	e.counted = true
	code := ""
	if e.ncode == len(e.code) {
		code = string(e.code[:])
	}
	e.counts.Add(code)
}
