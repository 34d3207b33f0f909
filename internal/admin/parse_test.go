package admin

import (
	"slices"
	"strings"
	"testing"
)

func TestSplitAndTokenize(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  [][]string // per statement, the token texts
	}{
		{query: "SHOW POOLS", want: [][]string{{"SHOW", "POOLS"}}},
		{query: " show lists ; ", want: [][]string{{"show", "lists"}}},
		{query: "PAUSE; RESUME;;", want: [][]string{{"PAUSE"}, {"RESUME"}}},
		{query: `PAUSE "a;b" TIMEOUT '5s'`, want: [][]string{{"PAUSE", "a;b", "TIMEOUT", "5s"}}},
		{query: `SET server_reset_query = 'it''s; fine'`, want: [][]string{{"SET", "server_reset_query", "=", "it's; fine"}}},
		{query: `SET admin_users=a,b`, want: [][]string{{"SET", "admin_users", "=", "a,b"}}},
		{query: `RESUME "we""ird"`, want: [][]string{{"RESUME", `we"ird`}}},
		{query: "", want: nil},
	} {
		var got [][]string
		for _, st := range splitStatements(tc.query) {
			toks, err := tokenize(st)
			if err != nil {
				t.Fatalf("%q: %v", tc.query, err)
			}
			var texts []string
			for _, tok := range toks {
				texts = append(texts, tok.text)
			}
			got = append(got, texts)
		}
		if !slices.EqualFunc(got, tc.want, slices.Equal) {
			t.Errorf("%q: got %q, want %q", tc.query, got, tc.want)
		}
	}
	if _, err := tokenize(`PAUSE 'open`); err == nil {
		t.Error("unterminated string accepted")
	}
}

// FuzzParse feeds the console's parser what a client may send: it must
// never panic, and never return an empty statement.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"SHOW POOLS", "PAUSE appdb TIMEOUT '5s' EXPIRE '1m'", `SET a = 'b''c'`, `"x;y"; 'z`, ";;", "\x00", "SET x TO \"y\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		for _, st := range splitStatements(q) {
			if strings.TrimSpace(st) == "" {
				t.Fatalf("empty statement from %q", q)
			}
			tokenize(st)
		}
	})
}
