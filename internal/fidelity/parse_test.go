package fidelity

import (
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestParseSteps(t *testing.T) {
	tests := []struct {
		name string
		line string
		want step
	}{
		{name: "query", line: `Query "SELECT 'a\tb'"`, want: step{send: &pgproto3.Query{String: "SELECT 'a\tb'"}}},
		{name: "query with quotes", line: `Query "SELECT \"x\" FROM t"`, want: step{send: &pgproto3.Query{String: `SELECT "x" FROM t`}}},
		{name: "empty query", line: `Query ""`, want: step{send: &pgproto3.Query{}}},
		{name: "parse", line: `Parse name="s1" query="SELECT $1::int, $2" types=[23, 0]`,
			want: step{send: &pgproto3.Parse{Name: "s1", Query: "SELECT $1::int, $2", ParameterOIDs: []uint32{23, 0}}}},
		{name: "parse unnamed", line: `Parse query="SELECT 1"`, want: step{send: &pgproto3.Parse{Query: "SELECT 1"}}},
		{name: "bind", line: `Bind portal="p" stmt="s1" params=["5", null, x"00ff"] param_formats=[0,0, 1] result_formats=[1]`,
			want: step{send: &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s1",
				Parameters: [][]byte{[]byte("5"), nil, {0, 0xff}}, ParameterFormatCodes: []int16{0, 0, 1}, ResultFormatCodes: []int16{1}}}},
		{name: "bind bare", line: `Bind`, want: step{send: &pgproto3.Bind{}}},
		{name: "bind empty list", line: `Bind params=[]`, want: step{send: &pgproto3.Bind{}}},
		{name: "describe statement", line: `Describe stmt="s1"`, want: step{send: &pgproto3.Describe{ObjectType: 'S', Name: "s1"}}},
		{name: "describe portal", line: `Describe portal=""`, want: step{send: &pgproto3.Describe{ObjectType: 'P'}}},
		{name: "close statement", line: `Close stmt="s1"`, want: step{send: &pgproto3.Close{ObjectType: 'S', Name: "s1"}}},
		{name: "execute", line: `Execute portal="c" max=2`, want: step{send: &pgproto3.Execute{Portal: "c", MaxRows: 2}}},
		{name: "execute bare", line: `Execute`, want: step{send: &pgproto3.Execute{}}},
		{name: "sync", line: `Sync`, want: step{send: &pgproto3.Sync{}}},
		{name: "flush", line: `Flush`, want: step{send: &pgproto3.Flush{}}},
		{name: "copy data", line: `CopyData "1\tfoo\n"`, want: step{send: &pgproto3.CopyData{Data: []byte("1\tfoo\n")}}},
		{name: "copy data hex", line: `CopyData x"0a"`, want: step{send: &pgproto3.CopyData{Data: []byte("\n")}}},
		{name: "copy done", line: `CopyDone`, want: step{send: &pgproto3.CopyDone{}}},
		{name: "copy fail", line: `CopyFail "stop"`, want: step{send: &pgproto3.CopyFail{Message: "stop"}}},
		{name: "expect rfq", line: `Expect RFQ`, want: step{expect: "ReadyForQuery", count: 1}},
		{name: "expect count", line: `Expect ReadyForQuery 3`, want: step{expect: "ReadyForQuery", count: 3}},
		{name: "expect type", line: `Expect CopyInResponse`, want: step{expect: "CopyInResponse", count: 1}},
		{name: "conn", line: `Conn listener`, want: step{conn: "listener"}},
		{name: "extra spaces", line: "Execute   portal=\"c\"\tmax=1  ", want: step{send: &pgproto3.Execute{Portal: "c", MaxRows: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := parseScript("t", tt.line)
			if err != nil {
				t.Fatal(err)
			}
			got := s.steps[0]
			tt.want.line, tt.want.text = 1, strings.TrimSpace(tt.line)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // in the error
	}{
		{name: "unknown command", text: "Frobnicate", want: "line 1: Frobnicate: unknown command"},
		{name: "unknown key", text: `Parse query="x" nmae="s"`, want: `unknown argument "nmae"`},
		{name: "missing query", text: `Parse name="s"`, want: "missing query="},
		{name: "unquoted string", text: `Query SELECT 1`, want: "wants a quoted string"},
		{name: "unterminated string", text: `Query "SELECT 1`, want: "bad quoted string"},
		{name: "no query", text: `Query`, want: "missing argument 1"},
		{name: "two queries", text: `Query "a" "b"`, want: "too many arguments"},
		{name: "describe both", text: `Describe stmt="a" portal="b"`, want: "either stmt"},
		{name: "describe neither", text: `Describe`, want: "either stmt"},
		{name: "bad format", text: `Bind result_formats=[2]`, want: "format codes"},
		{name: "bad type", text: `Parse query="x" types=["int"]`, want: "type OIDs"},
		{name: "bad param", text: `Bind params=[5]`, want: "strings"},
		{name: "bad hex", text: `CopyData x"zz"`, want: "bad hex"},
		{name: "unclosed list", text: `Bind params=["a"`, want: "list"},
		{name: "list without comma", text: `Bind params=["a" "b"]`, want: "want , or ]"},
		{name: "nested list", text: `Bind params=[[]]`, want: "nested"},
		{name: "junk after value", text: `Execute max=2x`, want: "bad integer"},
		{name: "junk after string", text: `Query "a"b`, want: "after a value"},
		{name: "unknown expect", text: `Expect Nothing`, want: `unknown backend message type "Nothing"`},
		{name: "zero count", text: `Expect RFQ 0`, want: "at least 1"},
		{name: "expect keyed", text: `Expect RFQ n=2`, want: `unknown argument "n"`},
		{name: "bad mode", text: "Modes statement\nSync", want: "pooling modes"},
		{name: "late modes", text: "Sync\nModes session", want: "line 2: Modes must come once"},
		{name: "no steps", text: "# only a comment\n", want: "no steps"},
		{name: "line number", text: "# c\n\nSync\nSync now", want: "line 4: Sync: too many arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseScript("t", tt.text)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParseHeader(t *testing.T) {
	s, err := parseScript("t", "# First line.\n#\n# Second paragraph.\nModes session\n# not part of the header\nSync\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "First line.\n\nSecond paragraph."; s.about != want {
		t.Errorf("about = %q, want %q", s.about, want)
	}
	if !reflect.DeepEqual(s.modes, []string{"session"}) {
		t.Errorf("modes = %v", s.modes)
	}
	if len(s.steps) != 1 || s.steps[0].line != 6 {
		t.Errorf("steps = %+v", s.steps)
	}
}

// TestScriptsParse keeps every case in testdata parseable without a
// database, so a typo shows up in the fast tests too.
func TestScriptsParse(t *testing.T) {
	scripts, err := loadScripts("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range scripts {
		if s.about == "" {
			t.Errorf("%s: no leading comment saying what the case checks", s.name)
		}
	}
}

func TestDiff(t *testing.T) {
	got := diff([]string{"a", "b", "c", "d"}, []string{"a", "x", "c", "d", "e"})
	want := "  a\n- b\n+ x\n  c\n  d\n+ e\n"
	if got != want {
		t.Errorf("diff:\n%s\nwant:\n%s", got, want)
	}
}
