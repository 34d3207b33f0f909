package auth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/xdg-go/scram"
)

// secretKind says which of the stored forms a Secret holds.
type secretKind uint8

const (
	kindNone  secretKind = iota // no password: every password check fails
	kindPlain                   // a clear-text password
	kindMD5                     // "md5" + hex(md5(password + user))
	kindSCRAM                   // a SCRAM-SHA-256 verifier
)

// Secret is a stored credential, as found in PgBouncer's auth_file or in
// PostgreSQL's pg_authid.rolpassword (and so in what auth_query returns):
//
//   - a clear-text password;
//   - an MD5 hash: "md5" followed by 32 lower-case hex digits of
//     md5(password + user name);
//   - a SCRAM-SHA-256 verifier:
//     "SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>".
//
// The zero Secret means "no password" (a NULL rolpassword): authentication
// against it always fails, after a full exchange.
//
// String never shows the credential, so a Secret is safe to log by mistake.
type Secret struct {
	kind  secretKind
	text  string                  // the stored form, as given to ParseSecret
	scram scram.StoredCredentials // kind == kindSCRAM only
}

// ParseSecret classifies s. It never fails: like PgBouncer and PostgreSQL
// (get_password_type in src/backend/libpq/crypt.c), anything that is not a
// well-formed MD5 hash or SCRAM verifier is a plain password. The empty
// string is no password at all, since neither PostgreSQL nor PgBouncer lets
// a client log in with an empty password.
func ParseSecret(s string) Secret {
	switch {
	case s == "":
		return Secret{}
	case isMD5Hash(s):
		return Secret{kind: kindMD5, text: s}
	}
	if creds, ok := parseSCRAMVerifier(s); ok {
		return Secret{kind: kindSCRAM, text: s, scram: creds}
	}
	return Secret{kind: kindPlain, text: s}
}

// Plain returns the clear-text password when the secret is one. The proxy
// needs it to log in to the server as the client's user; an MD5 hash or a
// SCRAM verifier cannot be turned back into a password.
func (s Secret) Plain() (string, bool) {
	if s.kind != kindPlain {
		return "", false
	}
	return s.text, true
}

// String names the kind of secret without revealing it.
func (s Secret) String() string {
	switch s.kind {
	case kindPlain:
		return "plain password"
	case kindMD5:
		return "MD5 hash"
	case kindSCRAM:
		return "SCRAM-SHA-256 verifier"
	default:
		return "no password"
	}
}

// GoString keeps %#v from printing the credential.
func (s Secret) GoString() string { return "auth.Secret(" + s.String() + ")" }

// isMD5Hash reports whether s has the form of an MD5 password hash; the
// check is PostgreSQL's (isMD5 in src/include/common/md5.h plus the hex test
// of get_password_type).
func isMD5Hash(s string) bool {
	const prefix = "md5"
	if len(s) != len(prefix)+32 || !strings.HasPrefix(s, prefix) {
		return false
	}
	for _, c := range s[len(prefix):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// parseSCRAMVerifier parses PostgreSQL's SCRAM-SHA-256 verifier format
// (parse_scram_secret in src/backend/libpq/auth-scram.c). Stored and server
// keys must be exactly one SHA-256 digest long, as PostgreSQL requires.
func parseSCRAMVerifier(s string) (scram.StoredCredentials, bool) {
	const prefix = "SCRAM-SHA-256$"
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return scram.StoredCredentials{}, false
	}
	factors, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return scram.StoredCredentials{}, false
	}
	iterText, saltText, ok := strings.Cut(factors, ":")
	if !ok {
		return scram.StoredCredentials{}, false
	}
	storedText, serverText, ok := strings.Cut(keys, ":")
	if !ok {
		return scram.StoredCredentials{}, false
	}
	iters, err := strconv.Atoi(iterText)
	if err != nil || iters <= 0 {
		return scram.StoredCredentials{}, false
	}
	salt, err := base64.StdEncoding.DecodeString(saltText)
	if err != nil || len(salt) == 0 {
		return scram.StoredCredentials{}, false
	}
	storedKey, err := base64.StdEncoding.DecodeString(storedText)
	if err != nil || len(storedKey) != sha256Size {
		return scram.StoredCredentials{}, false
	}
	serverKey, err := base64.StdEncoding.DecodeString(serverText)
	if err != nil || len(serverKey) != sha256Size {
		return scram.StoredCredentials{}, false
	}
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iters},
		StoredKey:  storedKey,
		ServerKey:  serverKey,
	}, true
}

const sha256Size = 32

// md5Hash is the stored MD5 form of a password: "md5" + hex(md5(password +
// user)) (pg_md5_encrypt in src/common/md5_common.c).
func md5Hash(password, user string) string {
	sum := md5.Sum([]byte(password + user))
	return "md5" + hex.EncodeToString(sum[:])
}

// md5Response is what a client sends for AuthenticationMD5Password: "md5" +
// hex(md5(hex part of the stored hash + salt)) (PostgreSQL docs,
// "Frontend/Backend Protocol", message AuthenticationMD5Password).
func md5Response(storedHash string, salt [4]byte) string {
	sum := md5.Sum(append([]byte(storedHash[len("md5"):]), salt[:]...))
	return "md5" + hex.EncodeToString(sum[:])
}

// scramCredentials computes SCRAM-SHA-256 stored credentials from a clear
// text password. Like PostgreSQL (scram_build_secret and
// scram_verify_plain_password), the password is normalized with SASLprep
// when it can be, and used as it is otherwise, so that passwords that are
// not valid under SASLprep still work.
func scramCredentials(password string, kf scram.KeyFactors) (scram.StoredCredentials, error) {
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		client, err = scram.SHA256.NewClientUnprepped("", password, "")
		if err != nil {
			return scram.StoredCredentials{}, err
		}
	}
	return client.GetStoredCredentialsWithError(kf)
}

// verifyPlain reports whether a clear-text password from a client matches
// the secret; it works for every kind, as PostgreSQL's plain_crypt_verify.
func (s Secret) verifyPlain(user, password string) bool {
	switch s.kind {
	case kindPlain:
		return subtle.ConstantTimeCompare([]byte(password), []byte(s.text)) == 1
	case kindMD5:
		return subtle.ConstantTimeCompare([]byte(md5Hash(password, user)), []byte(s.text)) == 1
	case kindSCRAM:
		creds, err := scramCredentials(password, s.scram.KeyFactors)
		if err != nil {
			return false
		}
		return hmac.Equal(creds.StoredKey, s.scram.StoredKey) && hmac.Equal(creds.ServerKey, s.scram.ServerKey)
	default:
		return false
	}
}
