package router

import (
	"container/list"
	"encoding/binary"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Named prepared statements in transaction mode.
//
// A client's Parse of a named statement is kept by the session (client
// name -> stmtDef). The statement gets a proxy-wide server-side name
// ("pp_<n>"), one per distinct (query, parameter types), so clients that
// prepare the same query share it on a server connection. Each server
// connection remembers which of those it holds (connState.stmts, an LRU
// bounded by max_prepared_statements). Before a Bind or Describe that
// names a statement the current server connection lacks, the session sends
// that statement's Parse first and swallows its ParseComplete; a client's
// Parse of a statement the server already holds is not sent, and the
// session answers the ParseComplete itself, in order. Close of a statement
// forgets the client's name and is answered by the proxy; the server keeps
// the shared statement until the LRU evicts it.
//
// Responses are matched to requests with a queue of expectations (one per
// client message that the server, or the proxy, answers): see exp.

// stmtDef is one distinct statement. Immutable once registered, except
// for its two flags.
type stmtDef struct {
	name  string // server-side name
	parse []byte // the Parse message carrying name, ready to send
	rest  []byte // the query and parameter types (the tail of parse)
	// eff is what running the statement does to recorded state
	// (effects.go), effName the name it acts on.
	eff     effect
	effName string
	// ok is set once a server accepted the statement (ParseComplete), so
	// a later client Parse of it can be answered without a server.
	ok atomic.Bool
	// stale is set once the statement's result type changed under it (a
	// schema change): a server answered 0A000 "cached plan must not change
	// result type" for it, or preparing it again gave another row
	// description (shape.go). A stale definition is no longer in the
	// registry; clients that hold it get PostgreSQL's 0A000 at Bind until
	// they prepare the query again, which gets them a fresh definition.
	stale atomic.Bool
	// shape is the first RowDescription (or NoData) a server gave for
	// the statement (shape.go).
	shape atomic.Pointer[[]byte]
}

// stmtRegistry interns statements by their Parse body (query and
// parameter types) so equal statements share one server-side name.
type stmtRegistry struct {
	mu   sync.Mutex
	defs map[string]*stmtDef
	seq  uint64
}

// maxRegistry bounds the registry; when full it starts over (definitions
// still referenced by sessions and server connections stay valid; a
// statement registered again just gets a new server-side name).
const maxRegistry = 100_000

// lookup returns the statement for a Parse body if it is registered.
func (r *stmtRegistry) lookup(rest []byte) *stmtDef {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.defs[string(rest)]
}

// intern returns the statement for a Parse message body after its name:
// the query string and parameter types.
func (r *stmtRegistry) intern(rest []byte) *stmtDef {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.defs[string(rest)]; ok {
		return d
	}
	if r.defs == nil || len(r.defs) >= maxRegistry {
		r.defs = make(map[string]*stmtDef)
	}
	r.seq++
	name := "pp_" + strconv.FormatUint(r.seq, 10)
	msg, start := wire.AppendHeader(make([]byte, 0, 6+len(name)+len(rest)), wire.MsgParse)
	msg = append(msg, name...)
	msg = append(msg, 0)
	msg = append(msg, rest...)
	d := &stmtDef{name: name, parse: wire.FinishMessage(msg, start)}
	d.rest = d.parse[len(d.parse)-len(rest):]
	d.eff, d.effName = effectOf(queryOf(rest))
	r.defs[string(rest)] = d
	return d
}

// forget marks d stale and takes it out of the registry, so that the next
// Parse of its query gets a new server-side name.
func (r *stmtRegistry) forget(d *stmtDef) {
	d.stale.Store(true)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.defs[string(d.rest)] == d {
		delete(r.defs, string(d.rest))
	}
}

// queryOf returns the query of a Parse body's rest (query, then parameter
// types), without its terminating zero.
func queryOf(rest []byte) []byte {
	if i := indexZero(rest, 0); i >= 0 {
		return rest[:i]
	}
	return rest
}

// stmtCache is the LRU of statements a server connection holds.
type stmtCache struct {
	byDef map[*stmtDef]*list.Element
	lru   list.List // front: most recently used
}

func (c *stmtCache) has(d *stmtDef) bool {
	e, ok := c.byDef[d]
	if ok {
		c.lru.MoveToFront(e)
	}
	return ok
}

func (c *stmtCache) add(d *stmtDef) {
	if c.byDef == nil {
		c.byDef = make(map[*stmtDef]*list.Element)
	}
	c.byDef[d] = c.lru.PushFront(d)
}

func (c *stmtCache) remove(d *stmtDef) {
	if e, ok := c.byDef[d]; ok {
		c.lru.Remove(e)
		delete(c.byDef, d)
	}
}

// oldest returns the least recently used statement once more than max are
// held.
func (c *stmtCache) oldest(max int) *stmtDef {
	if max <= 0 || c.lru.Len() <= max {
		return nil
	}
	return c.lru.Back().Value.(*stmtDef)
}

func (c *stmtCache) clear() {
	c.byDef = nil
	c.lru.Init()
}

// expKind is what the session expects back for one message it sent (or
// answers itself).
type expKind uint8

const (
	expParse       expKind = iota + 1 // client Parse forwarded: forward ParseComplete
	expInjectParse                    // proxy's Parse: swallow ParseComplete
	expSynthParse                     // client Parse not sent: answer ParseComplete
	expBind                           // BindComplete
	expDescribe                       // [ParameterDescription] RowDescription | NoData
	expExecute                        // ... CommandComplete | EmptyQueryResponse | PortalSuspended
	expClose                          // client Close forwarded: CloseComplete
	expInjectClose                    // proxy's Close (LRU eviction): swallow CloseComplete
	expSynthClose                     // client Close answered by the proxy
	expSync                           // ReadyForQuery
	expQuery                          // everything up to ReadyForQuery
	expParseDup                       // a Parse of a name the client has: the server's 42P05, renamed
	expBindStale                      // Bind of a stale statement: its error becomes 0A000 (shape.go)
	expCheckShape                     // proxy's Describe of a statement it prepared again: swallow, compare
)

// exp is one expectation. def is set for Parse kinds, so a failed Parse
// can be forgotten by the server connection's cache.
type exp struct {
	kind expKind
	def  *stmtDef
	name string // client name a forwarded Parse created, undone if it fails
}

// expQueue is a FIFO of expectations, reusing its slice.
type expQueue struct {
	q    []exp
	head int
}

func (e *expQueue) push(x exp) { e.q = append(e.q, x) }

func (e *expQueue) empty() bool { return e.head == len(e.q) }

func (e *expQueue) peek() *exp {
	if e.empty() {
		return nil
	}
	return &e.q[e.head]
}

func (e *expQueue) pop() exp {
	x := e.q[e.head]
	e.head++
	if e.head == len(e.q) {
		e.q, e.head = e.q[:0], 0
	}
	return x
}

func (e *expQueue) reset() { e.q, e.head = e.q[:0], 0 }

// dropSyncs removes up to n Sync expectations from the tail: Syncs a
// server in COPY IN ignored (docs 55.2.6), which get no ReadyForQuery.
func (e *expQueue) dropSyncs(n int) {
	for i := len(e.q) - 1; i >= e.head && n > 0; i-- {
		if e.q[i].kind == expSync {
			e.q = append(e.q[:i], e.q[i+1:]...)
			n--
		}
	}
	if e.head == len(e.q) {
		e.q, e.head = e.q[:0], 0
	}
}

// parseName splits a Parse body into the statement name and the rest
// (query and parameter types).
func parseName(m wire.Message) (name, rest []byte, ok bool) {
	b := m.Body()
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}

// bindNames returns the portal and statement names of a Bind, and the
// offset in the body where the statement name ends.
func bindNames(m wire.Message) (portal, stmt []byte, end int, ok bool) {
	b := m.Body()
	i := indexZero(b, 0)
	if i < 0 {
		return nil, nil, 0, false
	}
	j := indexZero(b, i+1)
	if j < 0 {
		return nil, nil, 0, false
	}
	return b[:i], b[i+1 : j], j + 1, true
}

func indexZero(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] == 0 {
			return i
		}
	}
	return -1
}

// appendBindRenamed appends m, a Bind, with its statement name replaced.
func appendBindRenamed(dst []byte, m wire.Message, portal []byte, stmtEnd int, name string) []byte {
	dst, start := wire.AppendHeader(dst, wire.MsgBind)
	dst = append(dst, portal...)
	dst = append(dst, 0)
	dst = append(dst, name...)
	dst = append(dst, 0)
	dst = append(dst, m.Body()[stmtEnd:]...)
	return wire.FinishMessage(dst, start)
}

// appendTargeted appends a Describe or Close ('S'/'P' then a name) naming
// name instead.
func appendTargeted(dst []byte, typ, kind byte, name string) []byte {
	dst, start := wire.AppendHeader(dst, typ)
	dst = append(dst, kind)
	dst = append(dst, name...)
	dst = append(dst, 0)
	return wire.FinishMessage(dst, start)
}

var (
	msgParseComplete = []byte{wire.MsgParseComplete, 0, 0, 0, 4}
	msgCloseComplete = []byte{wire.MsgCloseComplete, 0, 0, 0, 4}
)

func msgLen(m []byte) int { return int(binary.BigEndian.Uint32(m[1:5])) }
