package router

import (
	"fmt"
	"strings"
	"unique"

	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// reportedParams are the session parameters PostgreSQL reports with
// ParameterStatus and that a client may SET; their values follow the client
// from one server connection to the next (PostgreSQL docs 55.2.7,
// "Asynchronous Operations"; PgBouncer tracks the same set plus a few).
var reportedParams = map[string]string{
	"client_encoding":               "client_encoding",
	"datestyle":                     "DateStyle",
	"intervalstyle":                 "IntervalStyle",
	"timezone":                      "TimeZone",
	"standard_conforming_strings":   "standard_conforming_strings",
	"application_name":              "application_name",
	"default_transaction_read_only": "default_transaction_read_only",
}

// carriedParams are further startup parameters the proxy applies with SET
// on whichever server connection serves the client, spelled as PostgreSQL
// does; any other settable parameter (settable.go) is carried the same
// way. PostgreSQL does not report them, so a later SET by the client does
// not follow it in transaction mode (documented in the README).
var carriedParams = map[string]string{
	"search_path":                         "search_path",
	"extra_float_digits":                  "extra_float_digits",
	"statement_timeout":                   "statement_timeout",
	"lock_timeout":                        "lock_timeout",
	"idle_in_transaction_session_timeout": "idle_in_transaction_session_timeout",
	"default_transaction_isolation":       "default_transaction_isolation",
	"bytea_output":                        "bytea_output",
	"timezone_abbreviations":              "timezone_abbreviations",
	"geqo":                                "geqo",
	"jit":                                 "jit",
	"work_mem":                            "work_mem",
	"row_security":                        "row_security",
	"synchronous_commit":                  "synchronous_commit",
}

// param is one tracked session parameter and the value the client expects.
type param struct {
	name     string // PostgreSQL's spelling
	value    string
	reported bool   // PostgreSQL reports it (reportedParams)
	raw      bool   // value is a SET statement the client ran, replayed as is
	seen     string // the value the client last saw in a ParameterStatus (reported only)
}

// canonicalParam maps a client-given parameter name to PostgreSQL's
// spelling, and reports whether the proxy can carry it.
func canonicalParam(name string) (string, bool) {
	l := strings.ToLower(name)
	if n, ok := reportedParams[l]; ok {
		return n, true
	}
	if n, ok := carriedParams[l]; ok {
		return n, true
	}
	if settableParams[l] || (strings.Contains(l, ".") && !strings.HasPrefix(l, "_pq_.")) {
		return l, true
	}
	return "", false
}

// parseOptions splits a startup "options" value into -c name=value pairs
// (libpq's PGOPTIONS syntax: "-c a=b -c c=d" or "--a=b"), with backslash
// escaping spaces.
func parseOptions(s string) ([]param, error) {
	var words []string
	var cur strings.Builder
	esc := false
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case r == '\\':
			esc = true
		case r == ' ' || r == '\t':
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		words = append(words, cur.String())
	}
	var out []param
	for i := 0; i < len(words); i++ {
		w := words[i]
		var kv string
		switch {
		case w == "-c" && i+1 < len(words):
			i++
			kv = words[i]
		case strings.HasPrefix(w, "-c"):
			kv = w[2:]
		case strings.HasPrefix(w, "--"):
			kv = w[2:]
		default:
			return nil, fmt.Errorf("unsupported option %q in startup parameter options", w)
		}
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("option %q in startup parameter options has no value", kv)
		}
		out = append(out, param{name: strings.ReplaceAll(name, "-", "_"), value: value})
	}
	return out, nil
}

// appendSet appends set_config(name, value, false) to a SELECT list.
// set_config takes the value as the startup packet does, unparsed: a list
// such as search_path "a, public" stays a list, where SET ... TO 'a, public'
// would make it one quoted name.
func appendSet(dst []byte, name, value string) []byte {
	if len(dst) == 0 {
		dst = append(dst, "SELECT "...)
	} else {
		dst = append(dst, ", "...)
	}
	dst = append(dst, "pg_catalog.set_config('"...)
	dst = append(dst, strings.ReplaceAll(name, `'`, `''`)...)
	dst = append(dst, "', '"...)
	dst = append(dst, strings.ReplaceAll(value, `'`, `''`)...)
	return append(dst, "', false)"...)
}

// connState is what the router keeps with a server connection (in
// pool.Conn.State). Only the session that has the connection bound touches
// it.
type connState struct {
	// carried holds the carried (unreported) parameters the proxy SET on
	// this connection.
	carried map[string]string
	// carriedUnknown is set once a client statement may have changed
	// carried parameters behind the record (a SET, RESET, DISCARD ALL):
	// the next synchronization starts from RESET ALL and sets everything.
	carriedUnknown bool
	// stmts are the named statements the proxy prepared on it.
	stmts stmtCache
	// wipes counts statement wipes (DEALLOCATE ALL, DISCARD ALL) sent and
	// not yet confirmed by the server.
	wipes int
	// The parameters it was last synchronized to (wantKey: equal for
	// every session expecting the same values) and the connection's
	// parameter version then: when both still match, nothing can differ
	// and the comparison is skipped, whichever client it serves.
	syncedKey  unique.Handle[string]
	syncedConn uint64
}

// wantKeyLocked returns a handle equal for sessions that expect the same
// parameters (names, values, and how each is carried), made again only
// when want changed. Called with mu held.
func (s *Session) wantKeyLocked() unique.Handle[string] {
	if s.wantKeyOK && s.wantKeyVer == s.wantVer {
		return s.wantKey
	}
	var buf [512]byte
	b := buf[:0]
	for _, p := range s.want {
		b = append(b, p.name...)
		b = append(b, 0)
		b = append(b, p.value...)
		flags := byte('0')
		if p.reported {
			flags |= 1
		}
		if p.raw {
			flags |= 2
		}
		b = append(b, 0, flags)
	}
	s.wantKey, s.wantKeyVer, s.wantKeyOK = unique.Make(string(b)), s.wantVer, true
	return s.wantKey
}

func stateOf(c *pool.Conn) *connState {
	if cs, ok := c.State.(*connState); ok {
		return cs
	}
	cs := &connState{}
	c.State = cs
	return cs
}

// paramSync builds the statements that make server connection c match the
// session's parameters (SET what differs, RESET carried parameters a
// previous client set and this one did not), records the new values on c,
// and appends them as one Query message (nothing when all match).
func paramSync(dst []byte, c *pool.Conn, s *Session) []byte {
	cs := stateOf(c)
	key := s.wantKeyLocked()
	if cs.syncedKey == key && cs.syncedConn == c.ParamsVersion() && !cs.carriedUnknown {
		return dst
	}
	defer func() {
		cs.syncedKey, cs.syncedConn = key, c.ParamsVersion()
	}()
	want := s.want
	// After a client's SET, RESET or DISCARD ALL nothing recorded about
	// carried parameters can be trusted: start from RESET ALL (the server
	// connection's own startup values) and set every expected value.
	full := cs.carriedUnknown
	if full {
		cs.carriedUnknown = false
		clear(cs.carried)
	}
	var sets, raws []byte
	for _, p := range want {
		switch {
		case p.reported:
			if v, ok := c.Param(p.name); ok && v == p.value && !full {
				continue
			}
			c.SetParam(p.name, p.value)
		default:
			if v, ok := cs.carried[p.name]; ok && v == p.value && !full {
				continue
			}
			if cs.carried == nil {
				cs.carried = make(map[string]string)
			}
			cs.carried[p.name] = p.value
		}
		if p.raw {
			// A SET the client ran, replayed as it wrote it (a list, a
			// role, any syntax).
			raws = append(raws, "; "...)
			raws = append(raws, p.value...)
			continue
		}
		sets = appendSet(sets, p.name, p.value)
	}
	var resets []byte
	for name := range cs.carried {
		if !hasParam(want, name) {
			resets = append(resets, `; RESET "`...)
			resets = append(resets, name...)
			resets = append(resets, '"')
			delete(cs.carried, name)
		}
	}
	var sql []byte
	if full {
		// RESET ALL leaves the role and the session authorization alone.
		sql = append(sql, "RESET ALL; RESET SESSION AUTHORIZATION"...)
	}
	if sets != nil {
		if sql != nil {
			sql = append(sql, "; "...)
		}
		sql = append(sql, sets...)
	}
	if sql == nil && (resets != nil || raws != nil) {
		sql = append(sql, "SELECT 1"...)
	}
	sql = append(sql, resets...)
	sql = append(sql, raws...)
	if sql == nil {
		return dst
	}
	return wire.AppendQuery(dst, string(sql))
}

func hasParam(ps []param, name string) bool {
	for _, p := range ps {
		if p.name == name {
			return true
		}
	}
	return false
}
