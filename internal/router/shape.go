package router

import (
	"bytes"
	"context"
	"encoding/binary"

	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Result types of shared statements across schema changes.
//
// Drivers that prepare a statement and Describe it once (pgx, asyncpg,
// pgjdbc, postgres.js) keep the row description it returned and from then
// on only Bind and Execute. After a schema change that alters the
// statement's result type (ALTER TABLE ... ADD COLUMN under SELECT *),
// PostgreSQL answers every Bind of that statement with 0A000 "cached plan
// must not change result type" until the client prepares it again; a
// driver then re-prepares. Answering with rows of the new shape instead
// would break the driver's decoding (pgjdbc's 08P01 "bind message has 2
// result formats but query has 3 columns", asyncpg and postgres.js
// dropping or shifting columns).
//
// The proxy shares one server-side statement between clients, and may
// prepare it afresh on a server connection that never had it, where the
// server would plan it with the new shape without a word. So:
//
//   - The first row description a server gives for a statement (a
//     client's Describe of it, or of a portal just bound to it: pgjdbc
//     never describes its statements, only portals) is kept with it
//     (stmtDef.shape).
//   - Before a statement with a known shape is prepared on a server
//     connection that lacks it, the proxy checks the new preparation's
//     shape (Parse, Describe, Flush, and the client pump waits for the
//     answer, once per statement and server connection). A different
//     shape, or a 0A000 from a server, makes the statement stale.
//   - A Bind of a stale statement is answered as PostgreSQL answers it: the
//     Bind is sent under a name no statement has, so the server skips to
//     the Sync exactly as after a failed Bind, and its error becomes the
//     0A000 (shapeErrorMessage).
//   - A client's new Parse of the same query gets a fresh statement (the
//     stale one left the registry), so the driver's re-prepare works.

// staleName names no statement: a Bind of it fails at once.
const staleName = "pauseproxy_stale_statement"

// shapeErrorMessage is PostgreSQL's message for the 0A000 (plancache.c).
const shapeErrorMessage = "cached plan must not change result type"

// shapeError returns the ErrorResponse to answer a Bind of a stale
// statement with: the last one a server sent (drivers tell this error from
// other 0A000s by its fields: asyncpg retries on the routine
// RevalidateCachedQuery), else PostgreSQL 15's.
func (r *Router) shapeError() []byte {
	if e := r.shapeErr.Load(); e != nil {
		return *e
	}
	out, start := wire.AppendHeader(nil, wire.MsgErrorResponse)
	for _, f := range []string{"SERROR", "VERROR", "C0A000", "M" + shapeErrorMessage, "Fplancache.c", "L722", "RRevalidateCachedQuery"} {
		out = append(out, f...)
		out = append(out, 0)
	}
	out = append(out, 0)
	return wire.FinishMessage(out, start)
}

// keepShapeError remembers a server's own 0A000 for shapeError.
func (r *Router) keepShapeError(m wire.Message) {
	if r.shapeErr.Load() == nil {
		b := append([]byte(nil), m...)
		r.shapeErr.Store(&b)
	}
}

// rowShape is what of a RowDescription makes a result type: per column
// the name, type OID, type length and type modifier (PostgreSQL compares
// the same, equalRowTypes), not the table OID and column number.
func sameShape(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 || a[0] != b[0] {
		return false
	}
	if a[0] != wire.MsgRowDescription {
		return bytes.Equal(a, b) // NoData
	}
	ab, bb := wire.Message(a).Body(), wire.Message(b).Body()
	if len(ab) < 2 || len(bb) < 2 || !bytes.Equal(ab[:2], bb[:2]) {
		return false
	}
	n := int(binary.BigEndian.Uint16(ab))
	ab, bb = ab[2:], bb[2:]
	for i := 0; i < n; i++ {
		ai, bi := indexZero(ab, 0), indexZero(bb, 0)
		if ai < 0 || bi < 0 || len(ab) < ai+19 || len(bb) < bi+19 || !bytes.Equal(ab[:ai], bb[:bi]) {
			return false
		}
		// name\0, table OID (4), attnum (2), type OID (4), typlen (2),
		// typmod (4), format (2).
		if !bytes.Equal(ab[ai+7:ai+17], bb[bi+7:bi+17]) {
			return false
		}
		ab, bb = ab[ai+19:], bb[bi+19:]
	}
	return true
}

// recordShape keeps the first row description a server gave for def.
func recordShape(def *stmtDef, m wire.Message) {
	if def == nil || def.shape.Load() != nil {
		return
	}
	b := append([]byte(nil), m...)
	def.shape.CompareAndSwap(nil, &b)
}

// checkShape prepares def on srv and waits for the server's row
// description of it, when a client has seen the statement's shape and srv
// lacks the statement: a different shape makes def stale (see above). It
// reports false when the binding was lost meanwhile. Called by the client
// pump with mu held; it releases mu while it waits.
func (s *Session) checkShape(ctx context.Context, srv *pool.Conn, name []byte) bool {
	def := s.stmts[string(name)]
	if def == nil || def.stale.Load() || def.shape.Load() == nil {
		return true
	}
	cs := stateOf(srv)
	if cs.stmts.has(def) {
		return true
	}
	out := s.evict(cs, s.out[:0])
	cs.stmts.add(def)
	s.exps.push(exp{kind: expInjectParse, def: def})
	s.exps.push(exp{kind: expCheckShape, def: def})
	out = append(out, def.parse...)
	out = appendTargeted(out, wire.MsgDescribe, 'S', def.name)
	out = append(out, wire.MsgFlush, 0, 0, 0, 4)
	s.out = out[:0]
	ch := make(chan bool, 1)
	s.shapeCh = ch
	s.mu.Unlock()
	s.queue(srv, out)
	s.flushServer()
	var same bool
	select {
	case same = <-ch:
	case <-ctx.Done():
		same = true
	}
	s.mu.Lock()
	if !same {
		s.r.stmts.forget(def)
	}
	return s.bnd.server == srv
}

// shapeChecked hands the verdict of a shape check to the waiting client
// pump. Called with mu held.
func (s *Session) shapeChecked(same bool) {
	if s.shapeCh != nil {
		s.shapeCh <- same
		s.shapeCh = nil
	}
}

// namedStatement returns the statement a Bind or a Describe of a
// statement names, when it is a named one.
func namedStatement(m wire.Message) ([]byte, bool) {
	switch m.Type() {
	case wire.MsgBind:
		_, stmt, _, ok := bindNames(m)
		return stmt, ok && len(stmt) > 0
	case wire.MsgDescribe:
		body := m.Body()
		if len(body) > 2 && body[0] == 'S' {
			return body[1 : len(body)-1], true
		}
	}
	return nil, false
}
