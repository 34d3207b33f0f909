package router

import (
	"bytes"
	"strings"

	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Statements that change the server connection state the proxy records.
//
// The proxy keeps a record of each server connection (connState: the
// named statements it prepared there, the carried parameters it SET) and
// of each client (its statement names, the parameter values it expects).
// A client statement can change that state behind the record's back, and
// it may come in a simple Query or as an extended-protocol statement
// (psycopg 3 and pgjdbc send DEALLOCATE ALL and DISCARD ALL with Parse,
// Bind, Execute). So every Query and every Parse is classified by its
// first words (effectOf, cheap: one byte decides for almost every query),
// and the effect is applied when the statement runs: for a Query when it
// is sent, for the extended protocol at the Execute of a portal bound to
// the classified statement.
//
//   - DEALLOCATE [PREPARE] ALL, DISCARD ALL: the server connection loses
//     every named statement. Applied when sent (so that statements the
//     client pipelines behind it are prepared again), confirmed by the
//     server's CommandComplete; when the server refuses it instead, the
//     connection's record can no longer be trusted and the connection is
//     retired, and the client's names are given back.
//   - DEALLOCATE [PREPARE] name of a statement the proxy renamed: sent
//     under the server-side name; the client's name goes.
//   - RESET ALL, DISCARD ALL, RESET name, SET name TO DEFAULT: on
//     PostgreSQL the parameters go back to the values of the startup
//     packet. The proxy's server connection had other startup values, so
//     once the server confirms it (CommandComplete), the client's expected
//     values go back to its startup values and the proxy SETs them again
//     before the client's next statement.
//   - SET of a parameter the server does not report: the proxy's record of
//     carried parameters on that connection is no longer known; the next
//     session to bind it re-establishes its parameters from RESET ALL.
//   - ALTER ... (DDL) that committed: statements prepared before it may now
//     answer 0A000 "cached plan must not change result type"; every shared
//     statement is prepared again under a new name at its next use (see
//     stmts.go, staleness).

// effect is what a statement does to recorded state.
type effect uint8

const (
	effNone       effect = iota
	effDeallocAll        // DEALLOCATE [PREPARE] ALL
	effDealloc           // DEALLOCATE [PREPARE] name (name in effName)
	effDiscardAll        // DISCARD ALL
	effResetAll          // RESET ALL
	effReset             // RESET name, SET [SESSION] name TO|= DEFAULT (name in effName)
	effSet               // SET [SESSION] name ... of an unreported parameter
)

// wipes reports whether e drops every named statement.
func (e effect) wipes() bool { return e == effDeallocAll || e == effDiscardAll }

// resetsParams reports whether e sends parameters back to their startup
// values once the server confirms it.
func (e effect) resetsParams() bool {
	return e == effDiscardAll || e == effResetAll || e == effReset
}

// effectOf classifies a SQL string (a Query body or a Parse's query, with
// or without its terminating zero). name is the parameter or statement
// name for effDealloc and effReset, lower-cased unless quoted.
func effectOf(sql []byte) (e effect, name string) {
	sql = skipSpaceAndComments(sql)
	if len(sql) < 3 {
		return effNone, ""
	}
	// Decide on the first word before anything that allocates: SELECT
	// starts with 's' too.
	switch sql[0] | 0x20 {
	case 'd':
		if !keyword(sql, "deallocate") && !keyword(sql, "discard") {
			return effNone, ""
		}
	case 'r':
		if !keyword(sql, "reset") {
			return effNone, ""
		}
	case 's':
		if (sql[1]|0x20) != 'e' || (sql[2]|0x20) != 't' || (len(sql) > 3 && isIdentByte(sql[3])) {
			return effNone, ""
		}
	default:
		return effNone, ""
	}
	if i := bytes.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i]
	}
	sql = bytes.TrimRight(sql, " \t\r\n;")
	words := sqlWords(sql)
	if len(words) < 2 {
		return effNone, ""
	}
	switch kw := words[0]; {
	case equalFold(kw, "deallocate"):
		w := words[1:]
		if len(w) == 2 && equalFold(w[0], "prepare") {
			w = w[1:]
		}
		if len(w) != 1 {
			return effNone, ""
		}
		if equalFold(w[0], "all") {
			return effDeallocAll, ""
		}
		return effDealloc, identName(w[0])
	case equalFold(kw, "discard"):
		if len(words) == 2 && equalFold(words[1], "all") {
			return effDiscardAll, ""
		}
	case equalFold(kw, "reset"):
		if len(words) != 2 {
			return effNone, ""
		}
		if equalFold(words[1], "all") {
			return effResetAll, ""
		}
		return effReset, identName(words[1])
	case equalFold(kw, "set"):
		return setEffect(bytes.TrimLeft(sql[3:], " \t\r\n"))
	}
	return effNone, ""
}

// setEffect classifies what follows SET.
func setEffect(b []byte) (effect, string) {
	word := func() []byte {
		i := 0
		for i < len(b) && (isIdentByte(b[i]) || b[i] == '"') {
			if b[i] == '"' {
				j := bytes.IndexByte(b[i+1:], '"')
				if j < 0 {
					i = len(b)
					break
				}
				i += j + 2
				continue
			}
			i++
		}
		w := b[:i]
		b = bytes.TrimLeft(b[i:], " \t\r\n")
		return w
	}
	w := word()
	switch {
	case equalFold(w, "local"), equalFold(w, "transaction"):
		// Ends with the transaction: nothing outlives it.
		return effNone, ""
	case equalFold(w, "session"):
		w = word()
		if equalFold(w, "characteristics") {
			return effSet, "default_transaction_isolation"
		}
		if equalFold(w, "authorization") {
			return effNone, ""
		}
	}
	name := identName(w)
	switch name {
	case "", "role", "constraints":
		// SET ROLE changes who runs the statements: not a carried
		// parameter, and RESET ALL does not undo it (the
		// server_reset_query does). SET CONSTRAINTS is transactional.
		return effNone, ""
	}
	switch {
	case len(b) > 0 && b[0] == '=':
		b = bytes.TrimLeft(b[1:], " \t\r\n")
	case len(b) > 2 && (b[0]|0x20) == 't' && (b[1]|0x20) == 'o' && !isIdentByte(b[2]):
		b = bytes.TrimLeft(b[2:], " \t\r\n")
	}
	if equalFold(b, "default") {
		return effReset, name
	}
	if _, reported := reportedParams[name]; reported {
		// The server reports the new value (ParameterStatus): the record
		// follows without help.
		return effNone, ""
	}
	return effSet, name
}

// keyword reports whether b starts with the word kw (any case).
func keyword(b []byte, kw string) bool {
	return len(b) > len(kw) && bytes.EqualFold(b[:len(kw)], []byte(kw)) && !isIdentByte(b[len(kw)])
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '.' || c == '$' || (c >= '0' && c <= '9') || (c|0x20 >= 'a' && c|0x20 <= 'z') || c >= 0x80
}

// skipSpaceAndComments skips leading white space and SQL comments.
func skipSpaceAndComments(b []byte) []byte {
	for {
		for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r' || b[0] == '(') {
			if b[0] == '(' {
				return b
			}
			b = b[1:]
		}
		switch {
		case len(b) >= 2 && b[0] == '-' && b[1] == '-':
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return nil
			}
			b = b[i+1:]
		case len(b) >= 2 && b[0] == '/' && b[1] == '*':
			i := bytes.Index(b[2:], []byte("*/"))
			if i < 0 {
				return nil
			}
			b = b[i+4:]
		default:
			return b
		}
	}
}

// sqlWords splits on white space, keeping double-quoted identifiers whole.
// It allocates only for statements effectOf already found interesting.
func sqlWords(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
			b = b[1:]
		}
		if len(b) == 0 {
			break
		}
		i := 0
		inQuote := false
		for i < len(b) {
			c := b[i]
			if c == '"' {
				inQuote = !inQuote
			} else if !inQuote && (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
				break
			}
			i++
		}
		out = append(out, b[:i])
		b = b[i:]
	}
	return out
}

// identName returns an SQL identifier's name: unquoted (with "" for ") or
// lower-cased.
func identName(w []byte) string {
	if len(w) >= 2 && w[0] == '"' && w[len(w)-1] == '"' {
		return string(bytes.ReplaceAll(w[1:len(w)-1], []byte(`""`), []byte(`"`)))
	}
	return string(bytes.ToLower(w))
}

func equalFold(b []byte, s string) bool { return bytes.EqualFold(b, []byte(s)) }

// ddlTag reports whether a CommandComplete tag is a schema change that can
// change a prepared statement's result type.
func ddlTag(tag []byte) bool {
	// Not DROP: what depended on a dropped object fails anyway, and
	// applications that drop temporary tables in every transaction would
	// make every statement stale each time.
	return bytes.HasPrefix(tag, []byte("ALTER ")) || bytes.Equal(tag, []byte("CREATE VIEW"))
}

// pendingFx is a parameter reset sent to the server, applied to the
// client's expected values once the server confirms it.
type pendingFx struct {
	eff  effect
	name string
}

// noteParse records the effect of the unnamed statement a Parse defines.
// For DEALLOCATE of a statement the proxy renamed it returns the Parse to
// send instead, naming the server-side statement. Called by the client
// pump with mu held.
func (s *Session) noteParse(m wire.Message, out []byte) wire.Message {
	name, rest, ok := parseName(m)
	if !ok || len(name) > 0 {
		return m
	}
	s.unnamedEff, s.unnamedEffName = effectOf(queryOf(rest))
	if s.unnamedEff != effDealloc || !s.tracking {
		return m
	}
	def := s.stmts[s.unnamedEffName]
	if def == nil {
		return m
	}
	// The statement is bound and executed later, perhaps several times:
	// the rewritten Parse becomes the client's unnamed statement.
	msg, start := wire.AppendHeader(out, wire.MsgParse)
	msg = append(msg, 0)
	msg = append(msg, `DEALLOCATE "`+def.name+`"`...)
	msg = append(msg, 0, 0, 0)
	return wire.Message(wire.FinishMessage(msg, start)[len(out):])
}

// noteBind records the effect of the statement the unnamed portal runs.
// Called by the client pump with mu held.
func (s *Session) noteBind(portal []byte, def *stmtDef, unnamedStmt bool) {
	if len(portal) > 0 {
		return
	}
	switch {
	case unnamedStmt:
		s.portalEff, s.portalEffName = s.unnamedEff, s.unnamedEffName
	case def != nil:
		s.portalEff, s.portalEffName = def.eff, def.effName
	default:
		s.portalEff, s.portalEffName = effNone, ""
	}
}

// executeEffect is the effect of an Execute: the unnamed portal's.
func (s *Session) executeEffect(m wire.Message) (effect, string) {
	body := m.Body()
	if len(body) == 0 || body[0] != 0 {
		return effNone, ""
	}
	return s.portalEff, s.portalEffName
}

// sendEffect applies what a statement about to be sent does to recorded
// state, appending to out what must go first (the Parse of a statement a
// DEALLOCATE names). Called by the client pump with mu held.
func (s *Session) sendEffect(c *pool.Conn, eff effect, name string, out []byte) []byte {
	cs := stateOf(c)
	switch {
	case eff.wipes():
		if s.tracking {
			// Statements pipelined behind the wipe are prepared again;
			// if the server refuses the wipe, settleLocked gives the
			// client's names back.
			if len(s.stmts) > 0 {
				if s.wipeSaved == nil {
					s.wipeSaved = s.stmts
				} else {
					for k, v := range s.stmts {
						s.wipeSaved[k] = v
					}
				}
				s.stmts = nil
			}
			cs.stmts.clear()
			cs.wipes++
			s.fx = true
		}
	case eff == effDealloc && s.tracking:
		if def := s.stmts[name]; def != nil {
			out = s.ensure(cs, def, out)
			cs.stmts.remove(def)
			delete(s.stmts, name)
		}
	case eff == effSet:
		cs.carriedUnknown = true
	}
	if eff.resetsParams() {
		cs.carriedUnknown = true
		s.paramFx = append(s.paramFx, pendingFx{eff: eff, name: name})
		s.fx = true
	}
	return out
}

// observe is the effect bookkeeping of a session that does not track
// statements (session mode, or max_prepared_statements = 0). Called by the
// client pump with mu held.
func (s *Session) observe(c *pool.Conn, m wire.Message) {
	switch m.Type() {
	case wire.MsgQuery:
		if eff, name := effectOf(m.Body()); eff != effNone {
			s.sendEffect(c, eff, name, nil)
		}
	case wire.MsgParse:
		s.noteParse(m, nil)
	case wire.MsgBind:
		if portal, stmt, _, ok := bindNames(m); ok {
			s.noteBind(portal, nil, len(stmt) == 0)
		}
	case wire.MsgExecute:
		if eff, name := s.executeEffect(m); eff != effNone {
			s.sendEffect(c, eff, name, nil)
		}
	}
}

// confirm looks at a CommandComplete's tag for the statements whose
// effects wait for the server's word. Called on the reader goroutine.
func (s *Session) confirm(c *pool.Conn, m wire.Message) {
	tag := m.Body()
	if len(tag) < 4 {
		return
	}
	tag = tag[:len(tag)-1]
	switch tag[0] {
	case 'D', 'R', 'S', 'A', 'C':
	default:
		return
	}
	switch string(tag) {
	case "DEALLOCATE ALL", "DISCARD ALL", "RESET", "SET":
	default:
		if !ddlTag(tag) {
			return
		}
		s.mu.Lock()
		s.ddl, s.fx = true, true
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.fx {
		return
	}
	if string(tag) == "DEALLOCATE ALL" || string(tag) == "DISCARD ALL" {
		if cs := stateOf(c); cs.wipes > 0 {
			cs.wipes--
			if cs.wipes == 0 {
				s.wipeSaved = nil
			}
		}
	}
	if string(tag) != "DEALLOCATE ALL" && len(s.paramFx) > 0 {
		// Applied at the ReadyForQuery: PostgreSQL reports the changed
		// values (ParameterStatus) only just before it.
		s.paramDone = append(s.paramDone, s.paramFx[0])
		s.paramFx = append(s.paramFx[:0], s.paramFx[1:]...)
	}
}

// resetParamsLocked sends the client's expected parameters back to their
// startup values, as PostgreSQL does for RESET; the proxy SETs them before
// the client's next statement. Called with mu held.
func (s *Session) resetParamsLocked(fx pendingFx) {
	for i := range s.want {
		if fx.eff == effReset && !strings.EqualFold(s.want[i].name, fx.name) {
			continue
		}
		s.want[i].value = s.initial[i].value
	}
	s.wantVer++
	s.resync = true
}

// settleLocked runs at a ReadyForQuery. Confirmed parameter resets take
// effect. Once nothing is outstanding, effects the server did not confirm
// did not happen. A refused wipe leaves
// the server's statements in place while the record dropped them, so the
// connection is retired and the client's names come back. A committed
// schema change makes every shared statement stale. Called on the reader
// goroutine with mu held.
func (s *Session) settleLocked(c *pool.Conn, status byte) {
	for _, fx := range s.paramDone {
		s.resetParamsLocked(fx)
	}
	s.paramDone = s.paramDone[:0]
	if s.pending > 0 {
		s.fx = true
		return
	}
	if cs := stateOf(c); cs.wipes > 0 {
		cs.wipes = 0
		c.Retire()
		if s.stmts == nil {
			s.stmts = make(map[string]*stmtDef, len(s.wipeSaved))
		}
		for k, v := range s.wipeSaved {
			if _, ok := s.stmts[k]; !ok {
				s.stmts[k] = v
			}
		}
	}
	s.wipeSaved = nil
	s.paramFx = s.paramFx[:0]
	if s.ddl && status == wire.TxIdle {
		s.ddl = false
		s.r.stmts.staleAll()
	}
	s.fx = s.ddl
}
