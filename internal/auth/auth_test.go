package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// makeVerifier builds a PostgreSQL SCRAM-SHA-256 verifier from first
// principles (RFC 5802 section 3), independently of the code under test.
func makeVerifier(t *testing.T, password string, salt []byte, iters int) string {
	t.Helper()
	salted, err := pbkdf2.Key(sha256.New, password, salt, iters, sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	storedKey := sha256.Sum256(mac(salted, "Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iters, b64(salt), b64(storedKey[:]), b64(mac(salted, "Server Key")))
}

// loginResult is what a client shows of a login attempt.
type loginResult struct {
	ok   bool
	text string // the client's error output; empty on success
}

// client logs in to the test server and runs "select 1".
type client struct {
	name  string
	login func(t *testing.T, port int, user, password string) loginResult
}

var clients = []client{
	{"pgconn", loginPgconn},
	{"psql", loginPsql},
}

func loginPgconn(t *testing.T, port int, user, password string) loginResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=d sslmode=disable", port, user))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = password
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return loginResult{text: err.Error()}
	}
	defer conn.Close(ctx)
	res, err := conn.Exec(ctx, "select 1").ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != "1" {
		t.Fatalf("select 1 after login: %v %v", res, err)
	}
	return loginResult{ok: true}
}

// psqlPath finds psql. Without it the test skips, except in CI, where a
// missing client is a broken machine.
func psqlPath(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("psql")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("psql is required in CI: %v", err)
		}
		t.Skipf("psql not found: %v", err)
	}
	return path
}

func loginPsql(t *testing.T, port int, user, password string) loginResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=d sslmode=disable gssencmode=disable", port, user)
	cmd := exec.CommandContext(ctx, psqlPath(t), conninfo, "-X", "-w", "-A", "-t", "-c", "select 1")
	// A clean environment: no ~/.pgpass, service file or PG* defaults.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "PGPASSWORD=" + password, "LC_ALL=C"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		if got := strings.TrimSpace(stdout.String()); got != "1" {
			t.Fatalf("psql select 1 printed %q", got)
		}
		return loginResult{ok: true}
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("run psql: %v", err)
	}
	return loginResult{text: fmt.Sprintf("exit %d: %s", exitErr.ExitCode(), stderr.String())}
}

// assertAuthError checks that err is an *Error with code and message.
func assertAuthError(t *testing.T, err error, code, message string) *Error {
	t.Helper()
	var authErr *Error
	if !errors.As(err, &authErr) {
		t.Fatalf("Authenticate = %v (%T), want *Error %s", err, err, code)
	}
	if authErr.Code != code || authErr.Message != message {
		t.Fatalf("Authenticate = %s %q, want %s %q", authErr.Code, authErr.Message, code, message)
	}
	return authErr
}

const (
	rightPassword = "correct horse"
	wrongPassword = "battery staple"
	failedAlice   = `password authentication failed for user "alice"`
)

// TestAuthenticate runs every method against every kind of secret with real
// clients: the right password, a wrong one, and an unknown user, which must
// look exactly like the wrong password to the client.
func TestAuthenticate(t *testing.T) {
	secrets := map[string]Secret{
		"plain": ParseSecret(rightPassword),
		"md5":   ParseSecret(md5Hash(rightPassword, "alice")),
		"scram": ParseSecret(makeVerifier(t, rightPassword, []byte("0123456789abcdef"), 4096)),
	}
	tests := []struct {
		method  Method
		kind    string
		rightOK bool  // whether the right password logs in
		reason  error // why the right password fails otherwise
	}{
		{method: MethodPlain, kind: "plain", rightOK: true},
		{method: MethodPlain, kind: "md5", rightOK: true},
		{method: MethodPlain, kind: "scram", rightOK: true},
		{method: MethodMD5, kind: "plain", rightOK: true},
		{method: MethodMD5, kind: "md5", rightOK: true},
		{method: MethodMD5, kind: "scram", rightOK: true}, // switched to SCRAM
		{method: MethodSCRAM, kind: "plain", rightOK: true},
		{method: MethodSCRAM, kind: "md5", rightOK: false, reason: errMD5ForSCRAM},
		{method: MethodSCRAM, kind: "scram", rightOK: true},
	}
	for _, tt := range tests {
		for _, c := range clients {
			t.Run(fmt.Sprintf("%s/%s/%s", tt.method, tt.kind, c.name), func(t *testing.T) {
				known := map[string]Secret{"alice": secrets[tt.kind]}
				srv := startServer(t, tt.method, known)

				got := c.login(t, srv.port(), "alice", rightPassword)
				err := srv.result(t)
				if tt.rightOK {
					if !got.ok || err != nil {
						t.Fatalf("right password: client %+v, server %v", got, err)
					}
				} else {
					authErr := assertAuthError(t, err, CodeInvalidPassword, failedAlice)
					if !errors.Is(authErr, tt.reason) {
						t.Fatalf("right password failed with %v, want reason %v", authErr, tt.reason)
					}
					if got.ok || !strings.Contains(got.text, failedAlice) {
						t.Fatalf("right password: client %+v", got)
					}
				}

				wrong := c.login(t, srv.port(), "alice", wrongPassword)
				wrongErr := assertAuthError(t, srv.result(t), CodeInvalidPassword, failedAlice)
				if wrong.ok || !strings.Contains(wrong.text, failedAlice) {
					t.Fatalf("wrong password: client %+v", wrong)
				}
				t.Logf("wrong password, as the client shows it: %s", wrong.text)
				if c.name == "pgconn" && !strings.Contains(wrong.text, "SQLSTATE 28P01") {
					t.Fatalf("wrong password: client %q lacks SQLSTATE 28P01", wrong.text)
				}

				srv.setUsers(nil)
				unknown := c.login(t, srv.port(), "alice", rightPassword)
				unknownErr := assertAuthError(t, srv.result(t), CodeInvalidPassword, failedAlice)
				// Under md5, a user with only a SCRAM verifier is switched to
				// SCRAM while an unknown user gets md5: the one difference
				// the package doc admits (PostgreSQL has it too).
				switched := tt.method == MethodMD5 && tt.kind == "scram"
				if unknown != wrong && !switched {
					t.Fatalf("unknown user and wrong password differ for the client:\n%+v\n%+v", unknown, wrong)
				}
				wantReason := errWrongPassword
				if tt.reason != nil {
					wantReason = tt.reason
				}
				if !errors.Is(unknownErr, errUnknownUser) || !errors.Is(wrongErr, wantReason) {
					t.Fatalf("log reasons: unknown %v, wrong %v", unknownErr, wrongErr)
				}
			})
		}
	}
}

func TestTrust(t *testing.T) {
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			srv := startServer(t, MethodTrust, map[string]Secret{"alice": {}})
			if got := c.login(t, srv.port(), "alice", "anything"); !got.ok {
				t.Fatalf("known user: %+v", got)
			}
			if err := srv.result(t); err != nil {
				t.Fatal(err)
			}
			got := c.login(t, srv.port(), "bob", "anything")
			assertAuthError(t, srv.result(t), CodeInvalidAuthorization, `role "bob" does not exist`)
			if got.ok || !strings.Contains(got.text, `role "bob" does not exist`) {
				t.Fatalf("unknown user: %+v", got)
			}
		})
	}
}

// TestNoPassword: a user found without a password (a NULL from auth_query)
// fails after a full exchange, like a wrong password.
func TestNoPassword(t *testing.T) {
	for _, method := range []Method{MethodPlain, MethodMD5, MethodSCRAM} {
		t.Run(string(method), func(t *testing.T) {
			srv := startServer(t, method, map[string]Secret{"alice": ParseSecret("")})
			got := loginPgconn(t, srv.port(), "alice", rightPassword)
			authErr := assertAuthError(t, srv.result(t), CodeInvalidPassword, failedAlice)
			if got.ok || !errors.Is(authErr, errNoPassword) {
				t.Fatalf("client %+v, server %v", got, authErr)
			}
		})
	}
}

// TestLiteralVerifiers logs in against secrets generated by PostgreSQL, not
// by us: the known-password verifiers of PostgreSQL's regression tests
// (src/test/regress/sql/password.sql) and of PgBouncer's test suite
// (test/userlist.txt), whose passwords "password", "foo" and "bar" are
// known.
func TestLiteralVerifiers(t *testing.T) {
	users := map[string]Secret{
		"regress_passwd_sha_len0": ParseSecret("SCRAM-SHA-256$4096:A6xHKoH/494E941doaPOYg==$Ky+A30sewHIH3VHQLRN9vYsuzlgNyGNKCh37dy96Rqw=:COPdlNiIkrsacU5QoxydEuOH6e/KfiipeETb/bPw8ZI="),
		"scramuser1":              ParseSecret("SCRAM-SHA-256$4096:D76gvGUVj9Z4DNiGoabOBg==$RukL0Xo3Ql/2F9FsD7mcQ3GATG2fD3PA71qY1JagGDs=:BhKUwyyivFm7Tq2jDJVXSVRbRDgTWyBilZKgg6DDuYU="),
		"scramuser2":              ParseSecret("SCRAM-SHA-256$4096:BUYIT9YAsWf036OHLPfv2Q==$zuk7pzdEc5tvftsRIuwlStNxVc+wIE/xfDs7ahsKN0k=:Lov6mndE0DmlgtY60e1LyDsLctQyoH+Bvkm9K9njSa8="),
		"muser1":                  ParseSecret("md5ab8b744ff66bee42dc47bae34ca17959"),
	}
	passwords := map[string]string{"regress_passwd_sha_len0": "password", "scramuser1": "foo", "scramuser2": "bar", "muser1": "foo"}
	for _, method := range []Method{MethodPlain, MethodMD5, MethodSCRAM} {
		srv := startServer(t, method, users)
		for user, password := range passwords {
			if user == "muser1" && method == MethodSCRAM {
				continue // an MD5 hash cannot serve SCRAM
			}
			if got := loginPgconn(t, srv.port(), user, password); !got.ok {
				t.Errorf("%s %s: %+v", method, user, got)
			}
			if err := srv.result(t); err != nil {
				t.Errorf("%s %s: %v", method, user, err)
			}
			// PgBouncer's "foo" and "bar" users must not accept each other's password.
			if user == "scramuser1" {
				if got := loginPgconn(t, srv.port(), user, "bar"); got.ok {
					t.Errorf("%s %s logged in with another user's password", method, user)
				}
				assertAuthError(t, srv.result(t), CodeInvalidPassword, `password authentication failed for user "scramuser1"`)
			}
		}
	}
}
