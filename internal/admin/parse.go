package admin

import (
	"errors"
	"strings"
	"unicode"
)

// The console's grammar is PgBouncer's (src/admin.c): a command word, an
// optional argument, "SET key = value" with a bare or quoted value; words
// are case-insensitive, 'strings' and "identifiers" quote with doubled
// quotes. pauseproxy adds options after the argument (PAUSE db TIMEOUT
// '5s' EXPIRE '60s', SWITCHOVER db TO member) and accepts several
// statements separated by semicolons in one Query.

// splitStatements splits a Query's text at semicolons outside quotes. Empty
// statements are dropped.
func splitStatements(q string) []string {
	var out []string
	start := 0
	var quote rune
	for i, r := range q {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0 // a doubled quote reopens at the next character
			}
		case r == '\'' || r == '"':
			quote = r
		case r == ';':
			if s := strings.TrimSpace(q[start:i]); s != "" {
				out = append(out, s)
			}
			start = i + 1
		}
	}
	if s := strings.TrimSpace(q[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// token is one word of a statement.
type token struct {
	text string
	// quote is '\'' for a string, '"' for a quoted identifier, 0 for a
	// bare word or "=".
	quote rune
}

// is reports whether t is the bare keyword kw (case-insensitive).
func (t token) is(kw string) bool { return t.quote == 0 && strings.EqualFold(t.text, kw) }

var errUnterminated = errors.New("unterminated quoted string")

// tokenize splits one statement into words, strings, quoted identifiers
// and "=".
func tokenize(s string) ([]token, error) {
	var out []token
	rs := []rune(s)
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case unicode.IsSpace(r):
			i++
		case r == '=':
			out = append(out, token{text: "="})
			i++
		case r == '\'' || r == '"':
			var b strings.Builder
			i++
			closed := false
			for i < len(rs) {
				if rs[i] == r {
					if i+1 < len(rs) && rs[i+1] == r {
						b.WriteRune(r)
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				b.WriteRune(rs[i])
				i++
			}
			if !closed {
				return nil, errUnterminated
			}
			out = append(out, token{text: b.String(), quote: r})
		default:
			j := i
			for j < len(rs) && !unicode.IsSpace(rs[j]) && rs[j] != '=' && rs[j] != '\'' && rs[j] != '"' {
				j++
			}
			out = append(out, token{text: string(rs[i:j])})
			i = j
		}
	}
	return out, nil
}
