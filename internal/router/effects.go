package router

import (
	"bytes"
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

// effect is what a statement does to recorded state.
type effect uint8

const (
	effNone       effect = iota
	effDeallocAll        // DEALLOCATE [PREPARE] ALL
	effDealloc           // DEALLOCATE [PREPARE] name (name in effName)
	effDiscardAll        // DISCARD ALL
	effResetAll          // RESET ALL
	effReset             // RESET name (name in effName)
	effSetDefault        // SET [SESSION] name TO|= DEFAULT: as RESET name
	effSet               // SET [SESSION] name ... of an unreported parameter, or SET ROLE
	effListen            // LISTEN channel
	effUnlisten          // UNLISTEN channel, UNLISTEN * (name "*")
)

// wipes reports whether e drops every named statement.
func (e effect) wipes() bool { return e == effDeallocAll || e == effDiscardAll }

// resetsParams reports whether e sends parameters back to their startup
// values once the server confirms it.
func (e effect) resetsParams() bool {
	return e == effDiscardAll || e == effResetAll || e == effReset || e == effSetDefault
}

// tag is the CommandComplete tag that confirms e ran.
func (e effect) tag() string {
	switch e {
	case effDiscardAll:
		return "DISCARD ALL"
	case effResetAll, effReset:
		return "RESET"
	case effSetDefault, effSet:
		return "SET"
	case effListen:
		return "LISTEN"
	case effUnlisten:
		return "UNLISTEN"
	case effDeallocAll:
		return "DEALLOCATE ALL"
	}
	return ""
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
	case 'l':
		if !keyword(sql, "listen") {
			return effNone, ""
		}
	case 'u':
		if !keyword(sql, "unlisten") {
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
	case equalFold(kw, "listen"):
		if len(words) == 2 {
			return effListen, identName(words[1])
		}
	case equalFold(kw, "unlisten"):
		if len(words) == 2 {
			if string(words[1]) == "*" {
				return effUnlisten, "*"
			}
			return effUnlisten, identName(words[1])
		}
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
			// Carried like a parameter; RESET ALL does not undo it, so a
			// full synchronization resets it by name (paramSync).
			return effSet, "session_authorization"
		}
	}
	name := identName(w)
	switch name {
	case "", "constraints":
		// SET CONSTRAINTS is transactional.
		return effNone, ""
	case "role":
		// SET ROLE changes who runs the statements; carried like a
		// parameter, and reset by name since RESET ALL does not.
		return effSet, "role"
	}
	switch {
	case len(b) > 0 && b[0] == '=':
		b = bytes.TrimLeft(b[1:], " \t\r\n")
	case len(b) > 2 && (b[0]|0x20) == 't' && (b[1]|0x20) == 'o' && !isIdentByte(b[2]):
		b = bytes.TrimLeft(b[2:], " \t\r\n")
	}
	if equalFold(b, "default") {
		return effSetDefault, name
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

// statements calls fn with each statement of a simple Query's SQL: split
// at semicolons outside quotes, dollar quotes and comments. Most queries
// hold no semicolon before their end and cost one scan.
func statements(sql []byte, fn func(stmt []byte)) {
	if i := bytes.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i]
	}
	if j := bytes.IndexByte(sql, ';'); j < 0 || len(bytes.TrimRight(sql[j:], " \t\r\n;")) == 0 {
		fn(sql)
		return
	}
	start := 0
	for i := 0; i < len(sql); i++ {
		switch c := sql[i]; {
		case c == '\'' || c == '"':
			escapes := c == '\'' && i > 0 && (sql[i-1]|0x20) == 'e' && (i < 2 || !isIdentByte(sql[i-2]))
			for i++; i < len(sql); i++ {
				if escapes && sql[i] == '\\' {
					i++
					continue
				}
				if sql[i] == c {
					if i+1 < len(sql) && sql[i+1] == c {
						i++
						continue
					}
					break
				}
			}
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end := bytes.Index(sql[i+2:], []byte("*/"))
			if end < 0 {
				i = len(sql)
			} else {
				i += end + 3
			}
		case c == '$' && (i == 0 || !isIdentByte(sql[i-1])):
			// A dollar quote: $$ or $tag$, up to the same tag again.
			j := i + 1
			for j < len(sql) && sql[j] != '$' && isIdentByte(sql[j]) && !(sql[j] >= '0' && sql[j] <= '9' && j == i+1) {
				j++
			}
			if j < len(sql) && sql[j] == '$' {
				tag := sql[i : j+1]
				end := bytes.Index(sql[j+1:], tag)
				if end < 0 {
					i = len(sql)
				} else {
					i = j + 1 + end + len(tag) - 1
				}
			}
		case c == ';':
			fn(sql[start:i])
			start = i + 1
		}
	}
	if start < len(sql) {
		fn(sql[start:])
	}
}
