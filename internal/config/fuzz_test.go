package config

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzParseAuthLine checks that no auth_file line makes the parser panic
// and that a parsed line written back parses to the same user and
// password. The seed corpus is in
// testdata/fuzz/FuzzParseAuthLine.
func FuzzParseAuthLine(f *testing.F) {
	f.Add(`"user" "password"`)
	f.Add(`"we""ird" "pa""ss" rest`)
	f.Add(`; comment`)
	f.Fuzz(func(t *testing.T, line string) {
		user, password, ok, err := parseAuthLine(line)
		if err != nil {
			if ok {
				t.Fatalf("parseAuthLine(%q): ok with an error", line)
			}
			return
		}
		if !ok {
			return
		}
		if user == "" {
			t.Fatalf("parseAuthLine(%q): empty user accepted", line)
		}
		again := quoteAuthField(user) + " " + quoteAuthField(password)
		u2, p2, ok2, err2 := parseAuthLine(again)
		if err2 != nil || !ok2 || u2 != user || p2 != password {
			t.Fatalf("parseAuthLine(%q) = %q, %q; written back as %q it parses as %q, %q, %v, %v",
				line, user, password, again, u2, p2, ok2, err2)
		}
	})
}

// FuzzParseINIConnString checks that no connection string makes the parser
// panic and that a parsed string written back
// parses to the same map. The seed corpus is in
// testdata/fuzz/FuzzParseINIConnString.
func FuzzParseINIConnString(f *testing.F) {
	f.Add("host=h port=5432 dbname=app")
	f.Add("password='it''s a secret' user=u")
	f.Add("host='unterminated")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseINIConnString(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "connection string: ") {
				t.Fatalf("ParseINIConnString(%q) error = %v", s, err)
			}
			return
		}
		for k, v := range m {
			if k == "" || v == "" || strings.ContainsAny(k, "= \t\r\n\f\v") {
				t.Fatalf("ParseINIConnString(%q) gave key %q value %q", s, k, v)
			}
		}
		again := formatINIConnString(m)
		m2, err := ParseINIConnString(again)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("ParseINIConnString(%q) = %q; written back as %q it parses as %q, %v", s, m, again, m2, err)
		}
	})
}
