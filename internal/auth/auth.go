// Package auth authenticates clients on the proxy's side of a connection,
// the way PgBouncer does: it runs the password exchange of the PostgreSQL
// protocol (clear text, MD5 or SCRAM-SHA-256) against a stored Secret, and
// looks secrets up with auth_query.
//
// It owns the exchange, the secret formats and the rules of auth_hba_file
// (hba.go: which method a connection gets), nothing else. The caller owns
// the connection: it has read the StartupMessage (so it knows the user and
// database), it sets the login deadline, and it writes everything that
// follows the exchange: AuthenticationOk, ParameterStatus, BackendKeyData
// and ReadyForQuery on success, or the FATAL ErrorResponse of an *Error on
// failure. The package does not log, keeps no per-user state and starts no
// goroutines.
//
// # Probing for user names
//
// A client must not learn whether a user exists. For an unknown user, a user
// without a password, or a secret that cannot serve the method (an MD5 hash
// under scram-sha-256), Authenticate still runs the complete exchange and
// fails with the same SQLSTATE and message as a wrong password, as
// PostgreSQL does (its "mock" SCRAM exchange in auth-scram.c). The SCRAM salt
// offered for such users, and for users whose secret is a clear-text
// password, is derived from the user name and a key drawn when the process
// starts: it is stable for a user during the life of the process, like a
// real verifier's salt, and its iteration count is PostgreSQL's default,
// 4096. The Err of the returned *Error says which case it was, for the
// proxy's log only.
//
// What remains visible, as with PgBouncer: under method md5, a user with
// only a SCRAM verifier is offered SCRAM while an unknown user is offered
// md5 (deployments with SCRAM secrets should use method scram-sha-256); and
// response times are not equalized (deriving SCRAM keys from a clear-text
// password costs a PBKDF2 run that a mock exchange does not).
package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Method is how clients prove who they are. The values are PgBouncer's
// auth_type names, so config.AuthType converts directly.
type Method string

// The supported methods.
const (
	// MethodTrust accepts any known user without asking for a password.
	MethodTrust Method = "trust"
	// MethodPlain asks for the password in clear text
	// (AuthenticationCleartextPassword). It works with every kind of
	// secret.
	MethodPlain Method = "plain"
	// MethodMD5 asks for an MD5-hashed password. A user whose secret is a
	// SCRAM verifier is switched to SCRAM-SHA-256, as PgBouncer and
	// PostgreSQL do.
	MethodMD5 Method = "md5"
	// MethodSCRAM runs SCRAM-SHA-256 (RFC 7677), with channel binding
	// (SCRAM-SHA-256-PLUS) over TLS.
	// It needs a clear-text password or a SCRAM verifier.
	MethodSCRAM Method = "scram-sha-256"
)

// SQLSTATE codes of an *Error.
const (
	CodeInvalidPassword      = "28P01" // invalid_password: wrong password, unknown user, no usable secret
	CodeInvalidAuthorization = "28000" // invalid_authorization_specification: unknown user under trust, unknown method
	CodeProtocolViolation    = "08P01" // protocol_violation: the client broke the exchange
	CodeFeatureNotSupported  = "0A000" // feature_not_supported: a SCRAM authorization identity
)

// Error is an authentication failure to report to the client. Code and
// Message are safe to send: for every password failure they are the same
// (28P01, `password authentication failed for user "x"`), whatever the
// reason. Err holds the reason for the proxy's log and must not be sent.
type Error struct {
	Code    string // SQLSTATE
	Message string // for the client
	Detail  string // for the client, PostgreSQL's errdetail; may be empty
	Err     error  // the cause, for the log only; may be nil
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Message
	}
	return e.Message + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Response is the FATAL ErrorResponse to send to the client before closing.
func (e *Error) Response() *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{
		Severity:            "FATAL",
		SeverityUnlocalized: "FATAL",
		Code:                e.Code,
		Message:             e.Message,
		Detail:              e.Detail,
	}
}

// Reasons a password check failed, for the log (Error.Err).
var (
	errWrongPassword = errors.New("password does not match")
	errUnknownUser   = errors.New("user is not known to the proxy")
	errNoPassword    = errors.New("user has no password")
	errEmptyPassword = errors.New("client sent an empty password")
	errMD5ForSCRAM   = errors.New("user's stored secret is an MD5 hash, which cannot verify SCRAM-SHA-256: store a plain password or a SCRAM verifier, or use method md5")
)

// maxAuthMessageLen bounds the body of a client's authentication message,
// as PostgreSQL does (PG_MAX_AUTH_TOKEN_LENGTH in src/backend/libpq/auth.c),
// so an unauthenticated client cannot make the proxy buffer much.
const maxAuthMessageLen = 65535

// Authenticate runs the authentication exchange for user over be, with the
// given method, against secret. found is false when the user is unknown;
// the exchange then still runs in full and fails exactly like a wrong
// password (see the package doc). secret is ignored when found is false.
//
// It returns nil when the client proved its identity. It never sends
// AuthenticationOk: the caller does, followed by ParameterStatus messages,
// BackendKeyData and ReadyForQuery. After a SCRAM exchange it has already
// flushed AuthenticationSASLFinal.
//
// A failure that the client should hear about is an *Error; the caller sends
// Error.Response and closes. Any other error (read or write failure, the
// client hanging up, the caller's deadline) means the connection is gone or
// unusable: close it. Authenticate limits client messages to 65535 bytes
// with be.SetMaxBodyLen and leaves that limit set; a caller wanting another
// limit for the session sets its own afterwards.
func Authenticate(be *pgproto3.Backend, method Method, user string, secret Secret, found bool) error {
	return authenticate(be, method, user, secret, found, nil, ChannelBinding{})
}

// authenticate is Authenticate; when keys is not nil, a SCRAM exchange
// against a SCRAM verifier stores the client's keys there. cb is the TLS
// connection's channel binding, the zero value without TLS.
func authenticate(be *pgproto3.Backend, method Method, user string, secret Secret, found bool, keys **SCRAMKeys, cb ChannelBinding) error {
	if !found {
		secret = Secret{}
	}
	be.SetMaxBodyLen(maxAuthMessageLen)
	// Once the exchange is over, 'p' messages decode as pgproto3's default
	// again; none is valid after authentication anyway.
	defer func() { _ = be.SetAuthType(pgproto3.AuthTypeOk) }()

	switch method {
	case MethodTrust:
		if !found {
			// PostgreSQL's message when a role is missing after trust
			// authentication (InitializeSessionUserId); trust reveals
			// user names anyway.
			return &Error{Code: CodeInvalidAuthorization, Message: `role "` + user + `" does not exist`, Err: errUnknownUser}
		}
		return nil
	case MethodPlain:
		return authPlain(be, user, secret, found)
	case MethodMD5:
		if secret.kind == kindSCRAM {
			// An MD5 exchange needs the MD5 hash, which a SCRAM verifier
			// cannot give: PgBouncer and PostgreSQL (CheckPWChallengeAuth)
			// switch such users to SCRAM.
			return authSCRAM(be, user, secret, found, keys, cb)
		}
		return authMD5(be, user, secret, found)
	case MethodSCRAM:
		return authSCRAM(be, user, secret, found, keys, cb)
	default:
		return &Error{
			Code:    CodeInvalidAuthorization,
			Message: "authentication method is not supported by the proxy",
			Err:     fmt.Errorf("unknown method %q", method),
		}
	}
}

// authPlain asks for the password in clear text.
func authPlain(be *pgproto3.Backend, user string, secret Secret, found bool) error {
	password, err := askPassword(be, pgproto3.AuthTypeCleartextPassword, &pgproto3.AuthenticationCleartextPassword{})
	if err != nil {
		return err
	}
	switch {
	case password == "":
		return passwordFailed(user, errEmptyPassword)
	case !found:
		return passwordFailed(user, errUnknownUser)
	case secret.kind == kindNone:
		return passwordFailed(user, errNoPassword)
	case !secret.verifyPlain(user, password):
		return passwordFailed(user, errWrongPassword)
	}
	return nil
}

// authMD5 asks for an MD5-hashed password with a fresh random salt. secret
// is a plain password, an MD5 hash, or none.
func authMD5(be *pgproto3.Backend, user string, secret Secret, found bool) error {
	var salt [4]byte
	_, _ = rand.Read(salt[:]) // never fails (crypto/rand docs, Go 1.24+)
	response, err := askPassword(be, pgproto3.AuthTypeMD5Password, &pgproto3.AuthenticationMD5Password{Salt: salt})
	if err != nil {
		return err
	}
	var stored string
	switch {
	case response == "":
		return passwordFailed(user, errEmptyPassword)
	case !found:
		return passwordFailed(user, errUnknownUser)
	case secret.kind == kindPlain:
		stored = md5Hash(secret.text, user)
	case secret.kind == kindMD5:
		stored = secret.text
	default:
		return passwordFailed(user, errNoPassword)
	}
	if !hmac.Equal([]byte(response), []byte(md5Response(stored, salt))) {
		return passwordFailed(user, errWrongPassword)
	}
	return nil
}

// askPassword sends the password request req and returns the client's
// PasswordMessage.
func askPassword(be *pgproto3.Backend, authType uint32, req pgproto3.BackendMessage) (string, error) {
	if err := be.SetAuthType(authType); err != nil {
		return "", fmt.Errorf("set auth type: %w", err) // cannot happen: authType is a constant
	}
	be.Send(req)
	if err := be.Flush(); err != nil {
		return "", fmt.Errorf("send password request: %w", err)
	}
	msg, err := receive(be, "password message")
	if err != nil {
		return "", err
	}
	pw, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		return "", unexpected("password", msg)
	}
	return pw.Password, nil
}

// receive reads the client's next message. Transport failures come back as
// they are (wrapped); anything else that stops the decoding (an unknown
// type, a malformed or oversized body) is the client's protocol violation.
func receive(be *pgproto3.Backend, what string) (pgproto3.FrontendMessage, error) {
	msg, err := be.Receive()
	if err == nil {
		return msg, nil
	}
	if isTransportError(err) {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return nil, &Error{Code: CodeProtocolViolation, Message: "invalid " + what, Err: err}
}

// isTransportError tells read failures of the connection from decoding
// failures of pgproto3, which wraps neither.
func isTransportError(err error) bool {
	var netErr net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &netErr)
}

// unexpected is PostgreSQL's error for a message of the wrong type during
// authentication (recv_password_packet and CheckSASLAuth in auth.c).
func unexpected(want string, msg pgproto3.FrontendMessage) *Error {
	return &Error{
		Code:    CodeProtocolViolation,
		Message: fmt.Sprintf("expected %s response, got %s message", want, strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3.")),
	}
}

// passwordFailed is the one failure a client sees for a wrong password, an
// unknown user or an unusable secret: PostgreSQL's own (auth_failed in
// auth.c), with the reason kept for the log.
func passwordFailed(user string, reason error) *Error {
	return &Error{
		Code:    CodeInvalidPassword,
		Message: `password authentication failed for user "` + user + `"`,
		Err:     reason,
	}
}

// mockKey is drawn once per process; it keys the salts of mock and
// plain-password SCRAM credentials (see the package doc).
var mockKey = func() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // never fails (crypto/rand docs, Go 1.24+)
	return k
}()

// mockBytes derives 32 bytes from the user name for the given purpose, like
// PostgreSQL's scram_mock_salt (a hash of the user name and a secret nonce).
func mockBytes(purpose, user string) []byte {
	mac := hmac.New(sha256.New, mockKey)
	mac.Write([]byte(purpose))
	mac.Write([]byte{0})
	mac.Write([]byte(user))
	return mac.Sum(nil)
}
