package router

import (
	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// txPool returns the pool the transaction that m starts runs on (bind):
// with read_only_routing = "replica", a transaction the client declares
// read-only runs on a replica when one is usable; everything else on the
// session's own pool. Only in transaction mode: a session-mode binding
// lasts the whole session.
//
// Declared read-only means: m starts BEGIN or START TRANSACTION with READ
// ONLY among its modes (pgjdbc's setReadOnly(true) sends BEGIN READ ONLY)
// in a Query, a Parse, or the Bind of a named statement that holds it,
// or the session's default_transaction_read_only is on and m does not
// start a READ WRITE transaction (PostgreSQL docs, SET TRANSACTION: a
// transaction's mode is the default unless it says otherwise). The server
// enforces it either way: a write in such a transaction fails with 25006
// on a primary too.
func (s *Session) txPool(m wire.Message) *pool.Pool {
	if s.mode != config.PoolModeTransaction || !s.db.routesReads() || !s.readOnlyStart(m) {
		return s.pool
	}
	if p := s.db.readPool(s); p != nil {
		return p
	}
	return s.pool
}

// readOnlyStart reports whether the transaction m starts is declared
// read-only.
func (s *Session) readOnlyStart(m wire.Message) bool {
	var sql []byte
	switch m.Type() {
	case wire.MsgQuery:
		sql = m.Body()
	case wire.MsgParse:
		if _, rest, ok := parseName(m); ok {
			sql = rest
		}
	case wire.MsgBind:
		// A named statement prepared earlier (a driver that prepares
		// its BEGIN, as pgjdbc does past prepareThreshold): its query.
		if _, name, _, ok := bindNames(m); ok && len(name) > 0 {
			s.mu.Lock()
			if def := s.stmts[string(name)]; def != nil {
				sql = def.rest
			}
			s.mu.Unlock()
		}
	}
	begin, ro, rw := beginMode(sql)
	if begin && (ro || rw) {
		return ro && !rw
	}
	return s.sessionReadOnly()
}

// sessionReadOnly reports whether the client expects
// default_transaction_read_only = on.
func (s *Session) sessionReadOnly() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.want {
		if p.name == "default_transaction_read_only" {
			return p.value == "on" || p.value == "true" || p.value == "1" || p.value == "yes"
		}
	}
	return false
}

// beginMode reads the first statement of sql: whether it starts a
// transaction (BEGIN [WORK | TRANSACTION], START TRANSACTION) and whether
// its modes say READ ONLY or READ WRITE. Only the first few words are
// looked at; a streamed message's head is enough.
func beginMode(sql []byte) (begin, readOnly, readWrite bool) {
	var wbuf [16][]byte // on the stack: this runs for every transaction's first message
	words := wbuf[:0]
	b := sql
	for len(words) < len(wbuf) {
		b = skipSpaceAndComments(b)
		if len(b) > 0 && b[0] == ',' {
			b = b[1:]
			continue
		}
		i := 0
		for i < len(b) && isIdentByte(b[i]) {
			i++
		}
		if i == 0 {
			break // ';', the end, or something else
		}
		words = append(words, b[:i])
		b = b[i:]
	}
	if len(words) == 0 {
		return false, false, false
	}
	var modes [][]byte
	switch {
	case equalFold(words[0], "begin"):
		modes = words[1:]
		if len(modes) > 0 && (equalFold(modes[0], "work") || equalFold(modes[0], "transaction")) {
			modes = modes[1:]
		}
	case equalFold(words[0], "start") && len(words) > 1 && equalFold(words[1], "transaction"):
		modes = words[2:]
	default:
		return false, false, false
	}
	for i := 0; i+1 < len(modes); i++ {
		if equalFold(modes[i], "read") {
			readOnly = readOnly || equalFold(modes[i+1], "only")
			readWrite = readWrite || equalFold(modes[i+1], "write")
		}
	}
	return true, readOnly, readWrite
}
