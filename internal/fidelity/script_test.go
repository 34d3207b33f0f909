package fidelity

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// script is one parsed case: a sequence of steps on one or more
// connections. Its messages are built once and sent on every run.
type script struct {
	name  string   // file name without extension
	about string   // the leading comment block, shown when the case fails
	modes []string // proxy pooling modes to compare against (default both)
	steps []step
}

// step is one line of a script.
type step struct {
	line int
	text string // the line as written, for transcripts and errors

	// Exactly one of the groups below is set.
	send pgproto3.FrontendMessage // a message to send on the current conn

	conn string // Conn: switch to (and open if new) this connection

	expect string // Expect: read until count messages of this type arrived
	count  int
}

// allModes are the proxy pooling modes a script runs in unless it says
// otherwise with a Modes line.
var allModes = []string{"transaction", "session"}

// backendTypes are the names Expect accepts, as pgproto3 spells the types.
var backendTypes = map[string]bool{
	"BindComplete": true, "CloseComplete": true, "CommandComplete": true,
	"CopyBothResponse": true, "CopyData": true, "CopyDone": true,
	"CopyInResponse": true, "CopyOutResponse": true, "DataRow": true,
	"EmptyQueryResponse": true, "ErrorResponse": true, "NoData": true,
	"NoticeResponse": true, "NotificationResponse": true,
	"ParameterDescription": true, "ParameterStatus": true,
	"ParseComplete": true, "PortalSuspended": true, "ReadyForQuery": true,
	"RowDescription": true,
}

// loadScripts parses every testdata/*.txt file.
func loadScripts(dir string) ([]*script, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	var out []*script
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		s, err := parseScript(strings.TrimSuffix(filepath.Base(p), ".txt"), string(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// parseScript parses the text of one case; errors name the line.
func parseScript(name, text string) (*script, error) {
	s := &script{name: name, modes: allModes}
	var about []string
	inHeader, sawModes := true, false
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			if inHeader && strings.HasPrefix(line, "#") {
				about = append(about, strings.TrimSpace(strings.TrimPrefix(line, "#")))
			}
			continue
		}
		inHeader = false
		cmd, rest, _ := strings.Cut(line, " ")
		args, err := lexArgs(rest)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		if cmd == "Modes" {
			if sawModes || len(s.steps) > 0 {
				return nil, fmt.Errorf("line %d: Modes must come once, before the first step", i+1)
			}
			sawModes = true
			s.modes, err = parseModes(args)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			continue
		}
		st, err := parseStep(cmd, args)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", i+1, cmd, err)
		}
		st.line, st.text = i+1, line
		s.steps = append(s.steps, st)
	}
	if len(s.steps) == 0 {
		return nil, fmt.Errorf("no steps")
	}
	s.about = strings.TrimSpace(strings.Join(about, "\n"))
	return s, nil
}

func parseModes(args []arg) ([]string, error) {
	var modes []string
	for _, a := range args {
		if a.key != "" || a.val.kind != kindWord || !slices.Contains(allModes, a.val.s) {
			return nil, fmt.Errorf("Modes takes pooling modes (%s)", strings.Join(allModes, ", "))
		}
		modes = append(modes, a.val.s)
	}
	if len(modes) == 0 {
		return nil, fmt.Errorf("Modes needs at least one mode")
	}
	return modes, nil
}

// parseStep builds the step for one command and its arguments.
func parseStep(cmd string, args []arg) (step, error) {
	a := argSet{args: args}
	var st step
	positional := 0 // how many positional arguments cmd takes
	switch cmd {
	case "Query":
		st.send = &pgproto3.Query{String: a.posString(0)}
		positional = 1
	case "Parse":
		st.send = &pgproto3.Parse{Name: a.str("name"), Query: a.required("query"), ParameterOIDs: a.uint32s("types")}
	case "Bind":
		st.send = &pgproto3.Bind{
			DestinationPortal:    a.str("portal"),
			PreparedStatement:    a.str("stmt"),
			Parameters:           a.bytesList("params"),
			ParameterFormatCodes: a.int16s("param_formats"),
			ResultFormatCodes:    a.int16s("result_formats"),
		}
	case "Describe", "Close":
		kind, name := a.target()
		if cmd == "Describe" {
			st.send = &pgproto3.Describe{ObjectType: kind, Name: name}
		} else {
			st.send = &pgproto3.Close{ObjectType: kind, Name: name}
		}
	case "Execute":
		st.send = &pgproto3.Execute{Portal: a.str("portal"), MaxRows: uint32(a.int("max", 0))}
	case "Sync":
		st.send = &pgproto3.Sync{}
	case "Flush":
		st.send = &pgproto3.Flush{}
	case "CopyData":
		st.send = &pgproto3.CopyData{Data: a.posBytes(0)}
		positional = 1
	case "CopyDone":
		st.send = &pgproto3.CopyDone{}
	case "CopyFail":
		st.send = &pgproto3.CopyFail{Message: a.posString(0)}
		positional = 1
	case "Expect":
		st.expect = a.posWord(0)
		if st.expect == "RFQ" {
			st.expect = "ReadyForQuery"
		}
		if a.err == nil && !backendTypes[st.expect] {
			a.fail("unknown backend message type %q", st.expect)
		}
		st.count, positional = 1, 1
		if a.positional() > 1 {
			st.count, positional = a.posInt(1), 2
			if a.err == nil && st.count < 1 {
				a.fail("count must be at least 1")
			}
		}
	case "Conn":
		st.conn = a.posWord(0)
		positional = 1
	default:
		return st, fmt.Errorf("unknown command")
	}
	if a.positional() > positional {
		a.fail("too many arguments")
	}
	a.checkUnused()
	return st, a.err
}

// argSet hands out a line's arguments by key or position, remembering the
// first problem so that parseStep stays a flat list of fields.
type argSet struct {
	args []arg
	used map[string]bool
	err  error
}

func (a *argSet) fail(format string, v ...any) {
	if a.err == nil {
		a.err = fmt.Errorf(format, v...)
	}
}

func (a *argSet) lookup(key string) (value, bool) {
	if a.used == nil {
		a.used = make(map[string]bool)
	}
	a.used[key] = true
	for _, x := range a.args {
		if x.key == key {
			return x.val, true
		}
	}
	return value{}, false
}

func (a *argSet) checkUnused() {
	for _, x := range a.args {
		if x.key != "" && !a.used[x.key] {
			a.fail("unknown argument %q", x.key)
			return
		}
	}
}

// str returns key's string value, "" when the key is absent.
func (a *argSet) str(key string) string {
	v, ok := a.lookup(key)
	if !ok {
		return ""
	}
	if v.kind != kindString {
		a.fail("%s= wants a quoted string", key)
	}
	return v.s
}

// required is str for a key that must be present.
func (a *argSet) required(key string) string {
	if _, ok := a.lookup(key); !ok {
		a.fail("missing %s=", key)
	}
	return a.str(key)
}

func (a *argSet) int(key string, def int64) int64 {
	v, ok := a.lookup(key)
	if !ok {
		return def
	}
	if v.kind != kindInt {
		a.fail("%s= wants an integer", key)
	}
	return v.n
}

func (a *argSet) list(key string) ([]value, bool) {
	v, ok := a.lookup(key)
	if !ok {
		return nil, false
	}
	if v.kind != kindList {
		a.fail("%s= wants a list [...]", key)
		return nil, false
	}
	return v.list, true
}

func (a *argSet) uint32s(key string) []uint32 {
	l, _ := a.list(key)
	var out []uint32
	for _, v := range l {
		if v.kind != kindInt || v.n < 0 || v.n > 1<<32-1 {
			a.fail("%s= wants type OIDs", key)
		}
		out = append(out, uint32(v.n))
	}
	return out
}

func (a *argSet) int16s(key string) []int16 {
	l, _ := a.list(key)
	var out []int16
	for _, v := range l {
		if v.kind != kindInt || (v.n != 0 && v.n != 1) {
			a.fail("%s= wants format codes 0 (text) or 1 (binary)", key)
		}
		out = append(out, int16(v.n))
	}
	return out
}

// bytesList returns a list of parameter values: strings, x"hex" or null.
func (a *argSet) bytesList(key string) [][]byte {
	l, _ := a.list(key)
	var out [][]byte
	for _, v := range l {
		switch v.kind {
		case kindNull:
			out = append(out, nil)
		case kindString, kindBytes:
			out = append(out, v.bytes())
		default:
			a.fail("%s= wants strings, x\"hex\" or null", key)
		}
	}
	return out
}

// target reads Describe/Close's stmt="..." or portal="...".
func (a *argSet) target() (byte, string) {
	_, isStmt := a.lookup("stmt")
	_, isPortal := a.lookup("portal")
	switch {
	case isStmt && !isPortal:
		return 'S', a.required("stmt")
	case isPortal && !isStmt:
		return 'P', a.required("portal")
	}
	a.fail("wants either stmt=\"name\" or portal=\"name\"")
	return 0, ""
}

func (a *argSet) pos(i int) (value, bool) {
	n := 0
	for _, x := range a.args {
		if x.key == "" {
			if n == i {
				return x.val, true
			}
			n++
		}
	}
	a.fail("missing argument %d", i+1)
	return value{}, false
}

func (a *argSet) posString(i int) string {
	v, ok := a.pos(i)
	if ok && v.kind != kindString {
		a.fail("argument %d wants a quoted string", i+1)
	}
	return v.s
}

func (a *argSet) posBytes(i int) []byte {
	v, ok := a.pos(i)
	if ok && v.kind != kindString && v.kind != kindBytes {
		a.fail("argument %d wants a quoted string or x\"hex\"", i+1)
	}
	return v.bytes()
}

func (a *argSet) posWord(i int) string {
	v, ok := a.pos(i)
	if ok && v.kind != kindWord {
		a.fail("argument %d wants a name", i+1)
	}
	return v.s
}

func (a *argSet) posInt(i int) int {
	v, ok := a.pos(i)
	if ok && v.kind != kindInt {
		a.fail("argument %d wants an integer", i+1)
	}
	return int(v.n)
}

// positional counts the arguments without a key.
func (a *argSet) positional() int {
	n := 0
	for _, x := range a.args {
		if x.key == "" {
			n++
		}
	}
	return n
}

// arg is key=value, or a positional value when key is empty.
type arg struct {
	key string
	val value
}

type valueKind int

const (
	kindWord   valueKind = iota + 1 // bare word: S, RFQ, session
	kindString                      // "Go-quoted string"
	kindBytes                       // x"hex"
	kindInt                         // -12
	kindNull                        // null (in lists)
	kindList                        // [v, v, ...]
)

type value struct {
	kind valueKind
	s    string // word or string
	b    []byte // bytes
	n    int64
	list []value
}

func (v value) bytes() []byte {
	if v.kind == kindBytes {
		return v.b
	}
	return []byte(v.s)
}

// lexArgs splits the rest of a line into arguments: key=value or value,
// separated by spaces. Values are Go-quoted strings, x"hex" byte strings,
// integers, null, bare words, and [lists] of values separated by commas.
func lexArgs(s string) ([]arg, error) {
	var out []arg
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return out, nil
		}
		var a arg
		if k := keyLen(s); k > 0 {
			a.key, s = s[:k], s[k+1:]
		}
		v, rest, err := lexValue(s)
		if err != nil {
			return nil, err
		}
		if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
			return nil, fmt.Errorf("unexpected %q after a value", abbrev(rest))
		}
		a.val, s = v, rest
		out = append(out, a)
	}
}

// keyLen returns the length of a leading identifier followed by '=', or 0.
func keyLen(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '=' && i > 0:
			return i
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9':
		default:
			return 0
		}
	}
	return 0
}

func lexValue(s string) (value, string, error) {
	switch {
	case s == "":
		return value{}, "", fmt.Errorf("missing value")
	case s[0] == '"':
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return value{}, "", fmt.Errorf("bad quoted string at %q", abbrev(s))
		}
		u, _ := strconv.Unquote(q)
		return value{kind: kindString, s: u}, s[len(q):], nil
	case strings.HasPrefix(s, `x"`):
		end := strings.IndexByte(s[2:], '"')
		if end < 0 {
			return value{}, "", fmt.Errorf("unterminated x\"hex\"")
		}
		b, err := hex.DecodeString(s[2 : 2+end])
		if err != nil {
			return value{}, "", fmt.Errorf("bad hex in %q: %w", s[:3+end], err)
		}
		return value{kind: kindBytes, b: b}, s[3+end:], nil
	case s[0] == '[':
		return lexList(s[1:])
	}
	end := strings.IndexAny(s, " \t,]")
	if end < 0 {
		end = len(s)
	}
	w := s[:end]
	if w == "" {
		return value{}, "", fmt.Errorf("missing value at %q", abbrev(s))
	}
	if w == "null" {
		return value{kind: kindNull}, s[end:], nil
	}
	if c := w[0]; c == '-' || c >= '0' && c <= '9' {
		n, err := strconv.ParseInt(w, 10, 64)
		if err != nil {
			return value{}, "", fmt.Errorf("bad integer %q", w)
		}
		return value{kind: kindInt, n: n}, s[end:], nil
	}
	for _, c := range w {
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return value{}, "", fmt.Errorf("unexpected %q (strings need quotes)", w)
		}
	}
	return value{kind: kindWord, s: w}, s[end:], nil
}

// lexList reads list elements after the opening bracket.
func lexList(s string) (value, string, error) {
	l := value{kind: kindList}
	for {
		s = strings.TrimLeft(s, " \t")
		if strings.HasPrefix(s, "]") {
			return l, s[1:], nil
		}
		if len(l.list) > 0 {
			if !strings.HasPrefix(s, ",") {
				return value{}, "", fmt.Errorf("list: want , or ] at %q", abbrev(s))
			}
			s = strings.TrimLeft(s[1:], " \t")
		}
		v, rest, err := lexValue(s)
		if err != nil {
			return value{}, "", fmt.Errorf("list: %w", err)
		}
		if v.kind == kindList {
			return value{}, "", fmt.Errorf("list: nested lists are not supported")
		}
		l.list = append(l.list, v)
		s = rest
	}
}

func abbrev(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}
