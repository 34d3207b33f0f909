package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ParseAuthFile reads a PgBouncer auth_file (userlist.txt): one user per
// line, `"username" "password"`, each field in double quotes with "" for a
// double quote inside it; the rest of the line is ignored, as in PgBouncer.
// Blank lines and lines starting with ";" (PgBouncer's comment) or "#" are
// skipped. The password is kept as written: clear text, "md5" followed by
// 32 hex digits, or a SCRAM secret
// (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>). A user
// listed twice keeps the later password, as in PgBouncer.
//
// Every bad line is reported in an *Error, each problem naming the file
// and line but never a password.
func ParseAuthFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Problems: []string{readProblem(path, err)}}
	}
	users := map[string]string{}
	var problems []string
	for i, line := range strings.Split(string(data), "\n") {
		user, password, ok, err := parseAuthLine(line)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: line %d: %v", path, i+1, err))
			continue
		}
		if ok {
			users[user] = password
		}
	}
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	return users, nil
}

// parseAuthLine parses one auth_file line. ok is false for a blank or
// comment line. Errors never include the password.
func parseAuthLine(line string) (user, password string, ok bool, err error) {
	rest := strings.TrimLeft(strings.TrimSuffix(line, "\r"), " \t\f\v")
	if rest == "" || rest[0] == ';' || rest[0] == '#' {
		return "", "", false, nil
	}
	user, rest, err = authField(rest)
	if err != nil {
		return "", "", false, fmt.Errorf("user name: %w", err)
	}
	if user == "" {
		return "", "", false, errors.New("empty user name")
	}
	rest = strings.TrimLeft(rest, " \t")
	password, _, err = authField(rest)
	if err != nil {
		return "", "", false, fmt.Errorf("password of user %q: %w", user, err)
	}
	if strings.HasPrefix(password, scramPrefix) && passwordKind(password) != passwordSCRAM {
		return "", "", false, fmt.Errorf("password of user %q: malformed SCRAM secret (want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)", user)
	}
	return user, password, true, nil
}

// authField reads one double-quoted field at the start of s ("" inside
// stands for "), returning it and what follows.
func authField(s string) (string, string, error) {
	if s == "" || s[0] != '"' {
		return "", "", errors.New(`want a field in double quotes, like "name" "password"`)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '"' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '"' {
			b.WriteByte('"')
			i++
			continue
		}
		return b.String(), s[i+1:], nil
	}
	return "", "", errors.New("missing closing double quote")
}

// quoteAuthField quotes s for an auth_file: the inverse of authField.
func quoteAuthField(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// The kinds of stored password.
const (
	passwordPlain = iota
	passwordMD5
	passwordSCRAM
)

const scramPrefix = "SCRAM-SHA-256$"

// passwordKind classifies a stored password the way PgBouncer and
// PostgreSQL do: "md5" and 32 hex digits is an MD5 hash (PgBouncer does not
// check the digits; a string that is not hex is taken as clear text here,
// which is what it is), a well-formed SCRAM secret is a SCRAM secret,
// anything else is clear text.
func passwordKind(s string) int {
	switch {
	case len(s) == 35 && strings.HasPrefix(s, "md5") && isHex(s[3:]):
		return passwordMD5
	case validSCRAMSecret(s):
		return passwordSCRAM
	}
	return passwordPlain
}

// validSCRAMSecret checks the form of RFC 5803, as PostgreSQL stores it:
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, base64 salt
// and 32-byte base64 keys.
func validSCRAMSecret(s string) bool {
	rest, ok := strings.CutPrefix(s, scramPrefix)
	if !ok {
		return false
	}
	iterSalt, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return false
	}
	iter, salt, ok := strings.Cut(iterSalt, ":")
	if !ok {
		return false
	}
	if n, err := strconv.Atoi(iter); err != nil || n < 1 {
		return false
	}
	if b, err := base64.StdEncoding.DecodeString(salt); err != nil || len(b) == 0 {
		return false
	}
	stored, server, ok := strings.Cut(keys, ":")
	if !ok {
		return false
	}
	for _, k := range []string{stored, server} {
		if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) != 32 {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}
