package config

import (
	"reflect"
	"strings"
	"testing"
)

const scramAdmin = "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$8S6/gdnZSuhx2zN0r8NYyzJoS0paHF7Dm8lE1Rt/Fnk=:h+KbcvdqKjxE84zYOm6/u1mjYpBkoc20g1WyOp+I520="

func TestParseAuthFile(t *testing.T) {
	got, err := ParseAuthFile("testdata/userlist.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"postgres":        "md5d870fdc733701e62d2e02d9ab278c235",
		"pgbouncer_auth":  "plain auth password",
		"admin":           scramAdmin,
		`we"ird`:          `pa"ss`,
		"stats_collector": "stats",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseAuthFile = %q\nwant %q", got, want)
	}
	for user, kind := range map[string]int{"postgres": passwordMD5, "pgbouncer_auth": passwordPlain, "admin": passwordSCRAM} {
		if k := passwordKind(got[user]); k != kind {
			t.Errorf("passwordKind(%s's password) = %d, want %d", user, k, kind)
		}
	}
}

func TestParseAuthFileProblems(t *testing.T) {
	path := writeFile(t, t.TempDir(), "userlist.txt", strings.Join([]string{
		`"ok" "fine"`,
		`bob "hunter2"`,
		`"carol" hunter2`,
		`"dave" "hunter2`,
		`"unterminated`,
		`"" "hunter2"`,
		`"erin"`,
		`"frank" "SCRAM-SHA-256$4096:c2FsdA==$hunter2:hunter2"`,
		`"later" "first"`,
		`"later" "second"`,
		"\"crlf\" \"x\"\r",
	}, "\n"))
	_, err := ParseAuthFile(path)
	want := []string{
		`userlist.txt: line 2: user name: want a field in double quotes, like "name" "password"`,
		`userlist.txt: line 3: password of user "carol": want a field in double quotes, like "name" "password"`,
		`userlist.txt: line 4: password of user "dave": missing closing double quote`,
		`userlist.txt: line 5: user name: missing closing double quote`,
		`userlist.txt: line 6: empty user name`,
		`userlist.txt: line 7: password of user "erin": want a field in double quotes, like "name" "password"`,
		`userlist.txt: line 8: password of user "frank": malformed SCRAM secret (want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)`,
	}
	assertProblems(t, problemsOf(t, err), want)
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a message quotes a password:\n%v", err)
	}

	got, err := ParseAuthFile(writeFile(t, t.TempDir(), "userlist.txt", "\"later\" \"first\"\n\"later\" \"second\"\n\"crlf\" \"x\"\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got["later"] != "second" || got["crlf"] != "x" {
		t.Errorf("ParseAuthFile = %q, want the later password and CR dropped", got)
	}
}

func TestPasswordKind(t *testing.T) {
	for _, tc := range []struct {
		pw   string
		want int
	}{
		{"secret", passwordPlain},
		{"", passwordPlain},
		{"md5d870fdc733701e62d2e02d9ab278c235", passwordMD5},
		{"md5D870FDC733701E62D2E02D9AB278C235", passwordMD5},
		{"md5d870fdc733701e62d2e02d9ab278c23", passwordPlain},   // 31 digits
		{"md5zz70fdc733701e62d2e02d9ab278c235", passwordPlain},  // not hex
		{"md5d870fdc733701e62d2e02d9ab278c2355", passwordPlain}, // 33 digits
		{scramAdmin, passwordSCRAM},
		{"SCRAM-SHA-256$0:MDEy$8S6/gdnZSuhx2zN0r8NYyzJoS0paHF7Dm8lE1Rt/Fnk=:h+KbcvdqKjxE84zYOm6/u1mjYpBkoc20g1WyOp+I520=", passwordPlain},
		{"SCRAM-SHA-256$4096:$8S6/gdnZSuhx2zN0r8NYyzJoS0paHF7Dm8lE1Rt/Fnk=:h+KbcvdqKjxE84zYOm6/u1mjYpBkoc20g1WyOp+I520=", passwordPlain},
		{"SCRAM-SHA-256$4096:MDEy$c2hvcnQ=:h+KbcvdqKjxE84zYOm6/u1mjYpBkoc20g1WyOp+I520=", passwordPlain},
		{"SCRAM-SHA-256$4096:MDEy$8S6/gdnZSuhx2zN0r8NYyzJoS0paHF7Dm8lE1Rt/Fnk=", passwordPlain},
		{"SCRAM-SHA-256$4096:MDEy", passwordPlain},
		{"SCRAM-SHA-256$4096$x:y", passwordPlain},
	} {
		if got := passwordKind(tc.pw); got != tc.want {
			t.Errorf("passwordKind(%q) = %d, want %d", tc.pw, got, tc.want)
		}
	}
}

func TestParseAuthLine(t *testing.T) {
	for _, tc := range []struct {
		line, user, password string
		ok                   bool
	}{
		{line: "", ok: false},
		{line: "   \t", ok: false},
		{line: "; comment", ok: false},
		{line: "  # comment", ok: false},
		{line: `"u" "p"`, user: "u", password: "p", ok: true},
		{line: "\t\"u\"\t\"p\"  extra fields ignored", user: "u", password: "p", ok: true},
		{line: `"u""q" "p""q"""`, user: `u"q`, password: `p"q"`, ok: true},
		{line: `"u" ""`, user: "u", password: "", ok: true},
		{line: `"u" "; not a comment"`, user: "u", password: "; not a comment", ok: true},
	} {
		user, password, ok, err := parseAuthLine(tc.line)
		if err != nil || ok != tc.ok || user != tc.user || password != tc.password {
			t.Errorf("parseAuthLine(%q) = %q, %q, %v, %v; want %q, %q, %v", tc.line, user, password, ok, err, tc.user, tc.password, tc.ok)
		}
	}
}
