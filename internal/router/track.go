package router

import (
	"bytes"

	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// track records what the server (or the proxy) will answer for client
// message m on server connection srv, rewriting statement names where
// needed. It returns the bytes to send (nil: nothing), and whether answers
// the proxy owes may now be due. Called by the client pump with mu held.
func (s *Session) track(srv *pool.Conn, m wire.Message) (out []byte, synth bool) {
	cs := stateOf(srv)
	out = s.out[:0]
	switch m.Type() {
	case wire.MsgParse:
		name, rest, ok := parseName(m)
		if !ok || len(name) == 0 {
			// The unnamed statement: remembered so that a Bind in a
			// later transaction (pgx's describe-then-execute) finds it.
			m = s.noteParse(m, out)
			s.unnamed = append(s.unnamed[:0], m...)
			s.unnamedAt = s.binding
			s.exps.push(exp{kind: expParse})
			return m, false
		}
		def := s.r.stmts.intern(rest)
		s.db.noteClientParse()
		if cur, ok := s.stmts[string(name)]; ok {
			return s.duplicateParse(cs, cur, string(name), out), false
		}
		var created string
		if cur, ok := s.stmts[string(name)]; !ok || cur != def {
			if s.stmts == nil {
				s.stmts = make(map[string]*stmtDef)
			}
			created = string(name)
			s.stmts[created] = def
		}
		if cs.stmts.has(def) {
			s.exps.push(exp{kind: expSynthParse})
			return nil, true
		}
		out = s.evict(cs, out)
		cs.stmts.add(def)
		s.db.noteServerParse()
		s.exps.push(exp{kind: expParse, def: def, name: created})
		return append(out, def.parse...), false

	case wire.MsgBind:
		portal, stmt, end, ok := bindNames(m)
		if !ok {
			s.exps.push(exp{kind: expBind})
			return m, false
		}
		if len(stmt) == 0 {
			s.noteBind(portal, nil, true)
			out = s.ensureUnnamed(out)
			s.exps.push(exp{kind: expBind})
			return append(out, m...), false
		}
		def := s.stmts[string(stmt)]
		s.noteBind(portal, def, false)
		if def == nil {
			// Unknown to the proxy: the server answers "does not exist"
			// with the client's own name.
			s.exps.push(exp{kind: expBind})
			return m, false
		}
		if def.stale.Load() {
			// PostgreSQL's answer until the client prepares it again
			// (shape.go).
			s.exps.push(exp{kind: expBindStale, def: def})
			return s.appendBindRenamed(out, m, portal, end, staleName), false
		}
		out = s.ensure(cs, def, out)
		s.db.noteBind()
		s.exps.push(exp{kind: expBind, def: def})
		return s.appendBindRenamed(out, m, portal, end, def.name), false

	case wire.MsgDescribe:
		// Statements the proxy sends first are answered first: their
		// expectations go before the Describe's.
		body := m.Body()
		if len(body) >= 2 && body[0] == 'P' {
			// A portal's columns are its statement's (with the formats
			// the Bind asked for, which shapes do not compare).
			var def *stmtDef
			if s.boundDef != nil && bytes.Equal(body[1:len(body)-1], s.boundPortal) {
				def = s.boundDef
			}
			s.exps.push(exp{kind: expDescribe, def: def})
			return m, false
		}
		if len(body) < 2 || body[0] != 'S' {
			s.exps.push(exp{kind: expDescribe})
			return m, false
		}
		name := body[1 : len(body)-1]
		if len(name) == 0 {
			out = s.ensureUnnamed(out)
			s.exps.push(exp{kind: expDescribe})
			return append(out, m...), false
		}
		def := s.stmts[string(name)]
		if def == nil {
			s.exps.push(exp{kind: expDescribe})
			return m, false
		}
		out = s.ensure(cs, def, out)
		s.exps.push(exp{kind: expDescribe, def: def})
		return appendTargeted(out, wire.MsgDescribe, 'S', def.name), false

	case wire.MsgClose:
		body := m.Body()
		if len(body) >= 2 && body[0] == 'S' && len(body) > 2 {
			name := body[1 : len(body)-1]
			if _, ok := s.stmts[string(name)]; ok {
				// The server keeps the shared statement; only this
				// client's name goes away.
				delete(s.stmts, string(name))
				s.exps.push(exp{kind: expSynthClose})
				return nil, true
			}
		}
		s.exps.push(exp{kind: expClose})
		return m, false

	case wire.MsgExecute:
		if eff, name, raw := s.executeEffect(m); eff != effNone {
			out = s.sendEffect(srv, eff, name, raw, out)
			s.exps.push(exp{kind: expExecute})
			return append(out, m...), false
		}
		s.exps.push(exp{kind: expExecute})
	case wire.MsgSync:
		s.exps.push(exp{kind: expSync})
	case wire.MsgQuery:
		// A simple Query destroys the unnamed statement (docs 55.2.3).
		s.unnamed = s.unnamed[:0]
		s.unnamedAt = s.binding
		if s.rest() == 0 {
			// A streamed query (stream.go) is not looked into.
			out = s.trackQuery(srv, m, out)
		} else {
			out = m
		}
		s.exps.push(exp{kind: expQuery})
		return out, false
	case wire.MsgFunctionCall:
		s.exps.push(exp{kind: expQuery})
	}
	return m, false
}

// ensure prepares def on the server connection first when it lacks it.
func (s *Session) ensure(cs *connState, def *stmtDef, out []byte) []byte {
	if cs.stmts.has(def) {
		return out
	}
	out = s.evict(cs, out)
	cs.stmts.add(def)
	s.db.noteServerParse()
	s.exps.push(exp{kind: expInjectParse, def: def})
	return append(out, def.parse...)
}

// ensureUnnamed makes the server connection's unnamed statement the
// client's: its last Parse of it, re-sent when it was parsed in an earlier
// binding (possibly on another server connection), or none at all (a Close
// of the unnamed statement, so that a Bind fails as it would on PostgreSQL
// instead of running another client's leftover).
func (s *Session) ensureUnnamed(out []byte) []byte {
	if s.unnamedAt == s.binding {
		return out
	}
	s.unnamedAt = s.binding
	s.exps.push(exp{kind: expInjectParse})
	if len(s.unnamed) == 0 {
		s.exps.q[len(s.exps.q)-1].kind = expInjectClose
		return appendTargeted(out, wire.MsgClose, 'S', "")
	}
	return append(out, s.unnamed...)
}

// evict closes the least recently used statement on the server when the
// cache is full (max_prepared_statements).
func (s *Session) evict(cs *connState, out []byte) []byte {
	old := cs.stmts.oldest(s.r.cfg().MaxPreparedStatements - 1)
	if old == nil {
		return out
	}
	cs.stmts.remove(old)
	s.exps.push(exp{kind: expInjectClose, def: old})
	return appendTargeted(out, wire.MsgClose, 'S', old.name)
}

// trackQuery applies the effects of a simple Query's statement
// (effects.go). A DEALLOCATE of a statement the proxy renamed is sent
// under the server-side name.
func (s *Session) trackQuery(srv *pool.Conn, m wire.Message, out []byte) []byte {
	if eff, name := effectOf(m.Body()); eff == effDealloc {
		def := s.stmts[name]
		if def == nil {
			// Not the proxy's: the server answers for it.
			return m
		}
		out = s.sendEffect(srv, eff, name, "", out)
		return wire.AppendQuery(out, `DEALLOCATE "`+def.name+`"`)
	}
	s.queryEffects(srv, m.Body())
	return m
}

// describedLocked handles a statement's row description (RowDescription
// or NoData): the first one a client sees is kept as the statement's
// shape; the proxy's own check compares against it. Called with mu held.
func (s *Session) describedLocked(e exp, m wire.Message) {
	switch e.kind {
	case expDescribe:
		recordShape(e.def, m)
	case expCheckShape:
		if shape := e.def.shape.Load(); shape != nil {
			s.shapeChecked(sameShape(*shape, m))
		} else {
			s.shapeChecked(true)
		}
	}
}

// emitSynthLocked pops the answers the proxy owes that are now due (all
// before them answered) and appends them to dst. Called with mu held.
func (s *Session) emitSynthLocked(dst []byte) []byte {
	for {
		e := s.exps.peek()
		if e == nil {
			return dst
		}
		switch e.kind {
		case expSynthParse:
			dst = append(dst, msgParseComplete...)
		case expSynthClose:
			dst = append(dst, msgCloseComplete...)
		default:
			return dst
		}
		s.exps.pop()
	}
}

// response matches a server message against the expectations. It reports
// whether to forward the message, and appends the proxy's owed answers that
// follow it to synth. Called on the reader goroutine with mu held.
func (s *Session) response(c *pool.Conn, m wire.Message, synth []byte) (forward bool, out []byte) {
	typ := m.Type()
	head := s.exps.peek()
	if head == nil {
		return true, synth
	}
	switch typ {
	case wire.MsgParseComplete, wire.MsgBindComplete, wire.MsgCloseComplete, wire.MsgNoData:
		e := s.exps.pop()
		forward = e.kind != expInjectParse && e.kind != expInjectClose && e.kind != expCheckShape
		if typ == wire.MsgParseComplete && e.def != nil {
			e.def.ok.Store(true)
		}
		if typ == wire.MsgNoData {
			s.describedLocked(e, m)
		}
	case wire.MsgParameterDescription:
		// Part of a Describe's answer; the proxy's own is swallowed.
		return head.kind != expCheckShape, synth
	case wire.MsgRowDescription:
		if head.kind != expDescribe && head.kind != expCheckShape {
			return true, synth
		}
		e := s.exps.pop()
		forward = e.kind == expDescribe
		s.describedLocked(e, m)
	case wire.MsgCommandComplete, wire.MsgEmptyQueryResponse, wire.MsgPortalSuspended:
		if head.kind != expExecute {
			return true, synth
		}
		s.exps.pop()
		forward = true
	case wire.MsgErrorResponse:
		if head.kind == expQuery {
			return true, synth
		}
		// The failing message, then everything up to the Sync: the
		// server skips them (docs 55.2.3).
		failed := s.exps.pop()
		if failed.kind == expBind && failed.def != nil {
			if f, err := wire.ParseError(m); err == nil && string(f.Code) == "0A000" {
				s.r.keepShapeError(m)
				// "cached plan must not change result type": the schema
				// changed under the shared statement. This client sees
				// it, as it would directly; every session takes a fresh
				// statement at its next use (stmtDef.stale).
				s.r.stmts.forget(failed.def)
			}
		}
		if failed.kind == expBindStale {
			s.repl = s.r.shapeError()
		}
		if failed.kind == expParseDup {
			s.repl = renameInError(m, failed.def.name, failed.name)
		}
		s.undo(c, failed)
		for e := s.exps.peek(); e != nil && e.kind != expSync; e = s.exps.peek() {
			s.undo(c, s.exps.pop())
		}
		forward = true
	case wire.MsgReadyForQuery:
		for !s.exps.empty() {
			e := s.exps.pop()
			if e.kind == expSync || e.kind == expQuery {
				break
			}
			s.undo(c, e)
		}
		forward = true
	default:
		return true, synth
	}
	return forward, s.emitSynthLocked(synth)
}

// undo forgets what a message the server did not carry out would have
// done to its statement cache.
func (s *Session) undo(c *pool.Conn, e exp) {
	if e.kind == expCheckShape {
		// Skipped after an error: no verdict; the Bind goes on (and is
		// skipped too, up to the Sync).
		s.shapeChecked(true)
	}
	if e.def == nil {
		return
	}
	cs := stateOf(c)
	switch e.kind {
	case expParse, expInjectParse:
		cs.stmts.remove(e.def)
		if e.name != "" && s.stmts[e.name] == e.def {
			// A Parse that failed creates nothing (as in PostgreSQL).
			delete(s.stmts, e.name)
		}
	case expInjectClose:
		cs.stmts.add(e.def)
	}
}

// answerUnbound answers, without a server, a Parse of a statement some
// server already accepted, and a Close. This is what lets a client that
// prepares synchronously outside a transaction (pgbench -M prepared) go on
// while every server connection is busy: waiting for one there could
// deadlock a client program that serves several connections from one
// thread. A statement that became invalid since (a dropped table) then
// reports its error at Bind instead of Parse. Called by the client pump
// with no server bound.
func (s *Session) answerUnbound(m wire.Message) bool {
	switch m.Type() {
	case wire.MsgParse:
		name, rest, ok := parseName(m)
		if !ok || len(name) == 0 {
			return false
		}
		def := s.r.stmts.lookup(rest)
		if def == nil || !def.ok.Load() {
			return false
		}
		s.mu.Lock()
		if _, dup := s.stmts[string(name)]; dup {
			// PostgreSQL answers 42P05: the server gives that answer
			// (duplicateParse), with a server bound.
			s.mu.Unlock()
			return false
		}
		if s.stmts == nil {
			s.stmts = make(map[string]*stmtDef)
		}
		if cur, ok := s.stmts[string(name)]; !ok || cur != def {
			s.stmts[string(name)] = def
		}
		s.sendLocked(false, msgParseComplete, nil, nil)
		return true
	case wire.MsgClose:
		body := m.Body()
		if len(body) < 2 || body[0] != 'S' && body[0] != 'P' {
			// The server's 08P01 for a malformed Close.
			return false
		}
		if body[0] == 'S' {
			name := body[1 : len(body)-1]
			if len(name) == 0 {
				return false
			}
			s.mu.Lock()
			delete(s.stmts, string(name))
			s.mu.Unlock()
		}
		// A portal never outlives its transaction, so none exists now;
		// PostgreSQL answers CloseComplete for a missing name too.
		s.send(false, msgCloseComplete, nil, nil)
		return true
	}
	return false
}

// duplicateParse handles a Parse of a name the client already has: in
// PostgreSQL that fails with 42P05 and the rest of the batch is skipped.
// The proxy gets exactly that from the server by parsing the existing
// statement's server-side name again (preparing it first if needed); the
// error's message is rewritten to the client's name on the way back.
func (s *Session) duplicateParse(cs *connState, cur *stmtDef, name string, out []byte) []byte {
	out = s.ensure(cs, cur, out)
	s.exps.push(exp{kind: expParseDup, def: cur, name: name})
	msg, start := wire.AppendHeader(out, wire.MsgParse)
	msg = append(msg, cur.name...)
	msg = append(msg, 0, 0, 0, 0) // empty query, no parameter types
	return wire.FinishMessage(msg, start)
}

// renameInError rewrites the server-side statement name in an
// ErrorResponse's message to the client's name.
func renameInError(m wire.Message, server, client string) []byte {
	out, start := wire.AppendHeader(nil, wire.MsgErrorResponse)
	b := m.Body()
	for len(b) > 0 && b[0] != 0 {
		code := b[0]
		i := indexZero(b, 1)
		if i < 0 {
			return m
		}
		val := b[1:i]
		if code == 'M' {
			val = bytes.ReplaceAll(val, []byte(`"`+server+`"`), []byte(`"`+client+`"`))
		}
		out = append(out, code)
		out = append(out, val...)
		out = append(out, 0)
		b = b[i+1:]
	}
	out = append(out, 0)
	return wire.FinishMessage(out, start)
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}
