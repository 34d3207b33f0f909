package router

import (
	"bytes"
	"strings"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// The session's side of effects.go: noticing statements as they are sent,
// confirming them from the server's CommandComplete tags, and applying
// them at the right ReadyForQuery.
//
// Three queues, all guarded by mu:
//
//   - sentFx: statements sent whose CommandComplete has not come. A tag pops
//     the head when it is the one the head waits for (a statement that
//     failed never sends its tag, and the ReadyForQuery that ends the batch
//     drops what is left).
//   - paramDone: confirmed parameter resets, applied at the next
//     ReadyForQuery (PostgreSQL reports changed values, ParameterStatus,
//     just before it).
//   - txDone: confirmed SETs and LISTEN/UNLISTEN, which take effect when
//     the transaction commits: applied at a ReadyForQuery with status idle,
//     dropped if the transaction rolled back (a ROLLBACK tag, which a
//     COMMIT of a failed transaction also sends) or an implicit transaction
//     failed (an error while the last status was idle).

// pendingFx is an effect waiting for the server's word.
type pendingFx struct {
	eff  effect
	name string
	raw  string // effSet: the statement, replayed on other server connections
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
	q := queryOf(rest)
	s.unnamedEff, s.unnamedEffName = effectOf(q)
	s.unnamedRaw = ""
	if s.unnamedEff == effSet {
		s.unnamedRaw = string(bytes.TrimRight(bytes.TrimSpace(q), ";"))
	}
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

// noteBind records what a Bind bound: the named statement behind the
// portal, for a Describe of that portal (shape.go), and the effect of the
// statement the unnamed portal runs. Called by the client pump with mu
// held.
func (s *Session) noteBind(portal []byte, def *stmtDef, unnamedStmt bool) {
	s.boundDef, s.boundPortal = def, append(s.boundPortal[:0], portal...)
	if len(portal) > 0 {
		return
	}
	switch {
	case unnamedStmt:
		s.portalEff, s.portalEffName, s.portalRaw = s.unnamedEff, s.unnamedEffName, s.unnamedRaw
	case def != nil:
		s.portalEff, s.portalEffName, s.portalRaw = def.eff, def.effName, ""
		if def.eff == effSet {
			s.portalRaw = string(bytes.TrimRight(bytes.TrimSpace(queryOf(def.rest)), ";"))
		}
	default:
		s.portalEff, s.portalEffName, s.portalRaw = effNone, "", ""
	}
}

// executeEffect is the effect of an Execute: the unnamed portal's.
func (s *Session) executeEffect(m wire.Message) (effect, string, string) {
	body := m.Body()
	if len(body) == 0 || body[0] != 0 {
		return effNone, "", ""
	}
	return s.portalEff, s.portalEffName, s.portalRaw
}

// sendEffect applies what a statement about to be sent does to recorded
// state, appending to out what must go first (the Parse of a statement a
// DEALLOCATE names). raw is the statement itself, for effSet. Called by
// the client pump with mu held.
func (s *Session) sendEffect(c *pool.Conn, eff effect, name, raw string, out []byte) []byte {
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
	case eff == effListen && s.mode == config.PoolModeTransaction:
		// The server connection itself now listens, for the rest of
		// its life: it is closed at release rather than shared (the
		// client's notifications come through the listener).
		c.Retire()
	}
	if eff == effSet || eff.resetsParams() {
		cs.carriedUnknown = true
	}
	if eff.tag() != "" && eff != effDeallocAll && (eff != effListen && eff != effUnlisten || s.mode == config.PoolModeTransaction) {
		s.sentFx = append(s.sentFx, pendingFx{eff: eff, name: name, raw: raw})
		s.fx = true
	}
	return out
}

// queryEffects applies the effects of every statement of a simple Query.
// Called by the client pump with mu held.
func (s *Session) queryEffects(c *pool.Conn, body []byte) {
	statements(body, func(stmt []byte) {
		if eff, name := effectOf(stmt); eff != effNone {
			raw := ""
			if eff == effSet {
				raw = string(bytes.TrimSpace(stmt))
			}
			s.sendEffect(c, eff, name, raw, nil)
		}
	})
}

// observe is the effect bookkeeping of a session that does not track
// statements (session mode, or max_prepared_statements = 0). Called by the
// client pump with mu held.
func (s *Session) observe(c *pool.Conn, m wire.Message) {
	switch m.Type() {
	case wire.MsgQuery:
		s.queryEffects(c, m.Body())
	case wire.MsgParse:
		s.noteParse(m, nil)
	case wire.MsgBind:
		if portal, stmt, _, ok := bindNames(m); ok {
			s.noteBind(portal, nil, len(stmt) == 0)
		}
	case wire.MsgExecute:
		if eff, name, raw := s.executeEffect(m); eff != effNone {
			s.sendEffect(c, eff, name, raw, nil)
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
	case 'D', 'R', 'S', 'L', 'U':
	default:
		return
	}
	switch string(tag) {
	case "DEALLOCATE ALL", "DISCARD ALL", "RESET", "SET", "LISTEN", "UNLISTEN", "ROLLBACK":
	default:
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.fx {
		return
	}
	switch string(tag) {
	case "DEALLOCATE ALL", "DISCARD ALL":
		if cs := stateOf(c); cs.wipes > 0 {
			cs.wipes--
			if cs.wipes == 0 {
				s.wipeSaved = nil
			}
		}
	case "ROLLBACK":
		// The transaction's SETs and LISTENs never happened.
		s.txDone = s.txDone[:0]
		return
	}
	if len(s.sentFx) == 0 || s.sentFx[0].eff.tag() != string(tag) {
		return
	}
	fx := s.sentFx[0]
	s.sentFx = append(s.sentFx[:0], s.sentFx[1:]...)
	if fx.eff.resetsParams() {
		s.paramDone = append(s.paramDone, fx)
	} else {
		s.txDone = append(s.txDone, fx)
	}
}

// failed notes an ErrorResponse: in an implicit transaction (the last
// status was idle) it takes the transaction's effects with it. Called on
// the reader goroutine.
func (s *Session) failed() {
	s.mu.Lock()
	if s.fx && s.tx == wire.TxIdle {
		s.txDone = s.txDone[:0]
	}
	s.mu.Unlock()
}

// resetParamsLocked sends the client's expected parameters back to their
// startup values, as PostgreSQL does for RESET; the proxy SETs them before
// the client's next statement. Called with mu held.
func (s *Session) resetParamsLocked(fx pendingFx) {
	if fx.eff == effResetAll || fx.eff == effDiscardAll {
		// What the client last saw stays: the ParameterStatus of the
		// proxy's SET tells it the value came back.
		seen := make(map[string]string, len(s.want))
		for _, p := range s.want {
			seen[p.name] = p.seen
		}
		s.want = append(s.want[:0], s.initial...)
		for i := range s.want {
			if v, ok := seen[s.want[i].name]; ok {
				s.want[i].seen = v
			}
		}
	} else {
		s.resetParamLocked(fx.name)
	}
	s.wantVer++
	s.resync = true
}

// resetParamLocked takes one parameter back to its startup value, or
// forgets it when the client did not give it at startup. Called with mu
// held.
func (s *Session) resetParamLocked(name string) {
	for i := range s.want {
		if !strings.EqualFold(s.want[i].name, name) {
			continue
		}
		for _, p := range s.initial {
			if p.name == s.want[i].name {
				seen := s.want[i].seen
				s.want[i] = p
				s.want[i].seen = seen
				return
			}
		}
		s.want = append(s.want[:i], s.want[i+1:]...)
		return
	}
}

// setParamLocked records a session-level SET the server confirmed and
// that committed: the statement is replayed on the server connections of
// the client's later transactions. Called with mu held.
func (s *Session) setParamLocked(fx pendingFx) {
	for i := range s.want {
		if strings.EqualFold(s.want[i].name, fx.name) {
			s.want[i].value, s.want[i].raw = fx.raw, true
			s.wantVer++
			return
		}
	}
	s.want = append(s.want, param{name: fx.name, value: fx.raw, raw: true})
	s.wantVer++
}

// settleLocked runs at a ReadyForQuery. Confirmed parameter resets take
// effect; at the end of a transaction (status idle, nothing outstanding)
// so do its confirmed SETs, and its LISTEN/UNLISTEN actions are returned
// for the caller to apply without mu. Effects the server did not confirm
// did not happen: a refused wipe leaves the server's statements in place
// while the record dropped them, so the connection is retired and the
// client's names come back. Called on the reader goroutine with mu held.
func (s *Session) settleLocked(c *pool.Conn, status byte) (listen []pendingFx) {
	for _, fx := range s.paramDone {
		s.resetParamsLocked(fx)
	}
	s.paramDone = s.paramDone[:0]
	if s.bnd.pending > 0 {
		s.fx = true
		return nil
	}
	if status == wire.TxIdle {
		for _, fx := range s.txDone {
			if fx.eff == effSet {
				s.setParamLocked(fx)
			} else {
				listen = append(listen, fx)
			}
		}
		s.txDone = s.txDone[:0]
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
	s.sentFx = s.sentFx[:0]
	s.fx = len(s.txDone) > 0
	return listen
}
