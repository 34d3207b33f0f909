package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
)

// The SASL mechanisms: SCRAM-SHA-256 always, and over TLS first
// SCRAM-SHA-256-PLUS, SCRAM with channel binding of type
// tls-server-end-point (the hash of the certificate the proxy presented),
// as PostgreSQL offers them. A client that was offered -PLUS and answers
// that it could bind but thinks the server cannot ("y") is refused as a
// downgrade (RFC 5802 section 6).
const (
	mechanismSCRAM     = "SCRAM-SHA-256"
	mechanismSCRAMPlus = "SCRAM-SHA-256-PLUS"
)

// ChannelBinding is what SCRAM can bind a login to on a TLS connection:
// the tls-server-end-point hash (RFC 5929) of the certificate the proxy
// presented, the only channel binding type PostgreSQL (and libpq, pgx,
// pgjdbc) use. The zero value is a connection without TLS: -PLUS is not
// offered.
type ChannelBinding struct{ cb scram.ChannelBinding }

// TLSServerEndPoint returns the channel binding of a TLS connection on
// which the proxy presented cert.
func TLSServerEndPoint(cert *x509.Certificate) (ChannelBinding, error) {
	if cert == nil {
		return ChannelBinding{}, errors.New("no certificate")
	}
	// xdg-go/scram hashes the first peer certificate with the hash RFC
	// 5929 chooses for its signature algorithm; here the "peer" is the
	// proxy itself, as the client sees it.
	cb, err := scram.NewTLSServerEndpointBinding(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}})
	if err != nil {
		return ChannelBinding{}, fmt.Errorf("tls-server-end-point channel binding: %w", err)
	}
	return ChannelBinding{cb}, nil
}

// defaultIterations is PostgreSQL's default scram_iterations, used for
// credentials derived from a plain password and for mock credentials.
const defaultIterations = 4096

// saltLen is PostgreSQL's SCRAM_DEFAULT_SALT_LEN.
const saltLen = 16

// authSCRAM runs a SCRAM-SHA-256 exchange (PostgreSQL docs, "Frontend/Backend
// Protocol", section "SASL Authentication").
func authSCRAM(be *pgproto3.Backend, user string, secret Secret, found bool, keys **SCRAMKeys, cb ChannelBinding) error {
	creds, reason := storedCredentials(user, secret, found)
	srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) {
		// The user name inside the SCRAM message is ignored, as PostgreSQL
		// does: clients send an empty one ("n=") and the user is the
		// StartupMessage's.
		return creds, nil
	})
	if err != nil {
		return fmt.Errorf("new SCRAM server: %w", err) // cannot happen: NewServer only stores its arguments
	}
	conv := srv.NewConversation()
	plus := cb.cb.IsSupported()
	if plus {
		conv = srv.NewConversationWithChannelBinding(cb.cb)
	}
	clientFirst, serverFirst, clientFinal, err := scramExchange(be, user, conv, plus, reason)
	if err == nil && keys != nil && reason == nil {
		*keys = recoverSCRAMKeys(secret, clientFirst, serverFirst, clientFinal)
	}
	return err
}

// storedCredentials returns the SCRAM credentials to check the client
// against. A non-nil reason means the check must fail whatever the client
// sends: the credentials are then a mock with a salt derived from the user
// name, so that the exchange looks like a real one.
func storedCredentials(user string, secret Secret, found bool) (creds scram.StoredCredentials, reason error) {
	kf := scram.KeyFactors{Salt: string(mockBytes("salt", user)[:saltLen]), Iters: defaultIterations}
	mock := scram.StoredCredentials{
		KeyFactors: kf,
		StoredKey:  mockBytes("stored key", user),
		ServerKey:  mockBytes("server key", user),
	}
	switch {
	case !found:
		return mock, errUnknownUser
	case secret.kind == kindSCRAM:
		return secret.scram, nil
	case secret.kind == kindPlain:
		// The salt is the mock one on purpose: stable per user, like a
		// verifier's, so these users look like unknown ones and the
		// reverse (see the package doc).
		c, err := scramCredentials(secret.text, kf)
		if err != nil {
			return mock, fmt.Errorf("derive SCRAM credentials from the plain password: %w", err)
		}
		return c, nil
	case secret.kind == kindMD5:
		return mock, errMD5ForSCRAM
	default:
		return mock, errNoPassword
	}
}

// scramExchange drives conv through the SASL messages. reason, when not nil,
// is why the exchange must fail (conv then holds mock credentials).
//
// The SCRAM messages themselves are parsed and checked by xdg-go/scram,
// which fits PostgreSQL's use as it is: it accepts the empty user name
// "n=" that libpq and pgx send, and the gs2 flag "y" (a client able to bind
// channels that was not offered -PLUS), and rejects "p" since no channel
// binding was offered. One difference: it rejects a user name with an '='
// not followed by "2C" or "3D" (RFC 5802 section 5.1), which PostgreSQL
// ignores; no known client sends one. plus says whether -PLUS is offered
// (conv then binds to the connection).
// It returns the three messages of the exchange that make the AuthMessage
// (client-first, server-first, client-final), for SCRAM pass-through.
func scramExchange(be *pgproto3.Backend, user string, conv *scram.ServerConversation, plus bool, reason error) (clientFirst, serverFirst, clientFinal string, err error) {
	fail := func(e error) (string, string, string, error) { return "", "", "", e }
	if err := be.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		return fail(fmt.Errorf("set auth type: %w", err)) // cannot happen
	}
	mechanisms := []string{mechanismSCRAM}
	if plus {
		mechanisms = []string{mechanismSCRAMPlus, mechanismSCRAM}
	}
	be.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: mechanisms})
	if err := be.Flush(); err != nil {
		return fail(fmt.Errorf("send SASL request: %w", err))
	}

	msg, err := receive(be, "SASL initial response")
	if err != nil {
		return fail(err)
	}
	initial, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok {
		return fail(unexpected("SASL", msg))
	}
	if initial.AuthMechanism != mechanismSCRAM && !(plus && initial.AuthMechanism == mechanismSCRAMPlus) {
		// PostgreSQL's message and code (CheckSASLAuth in auth.c).
		return fail(&Error{
			Code:    CodeProtocolViolation,
			Message: "client selected an invalid SASL authentication mechanism",
			Err:     fmt.Errorf("mechanism %q", initial.AuthMechanism),
		})
	}
	// Copied now: the Backend reuses the buffer for the next message.
	clientFirst = string(initial.Data)
	// The mechanism and the gs2 header must agree (PostgreSQL's
	// read_client_first_message): -PLUS with "p=", plain SCRAM without.
	binds := strings.HasPrefix(clientFirst, "p=")
	switch {
	case initial.AuthMechanism == mechanismSCRAMPlus && !binds:
		return fail(&Error{Code: CodeProtocolViolation, Message: "malformed SCRAM message",
			Detail: "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data."})
	case initial.AuthMechanism == mechanismSCRAM && binds:
		return fail(&Error{Code: CodeProtocolViolation, Message: "malformed SCRAM message",
			Detail: "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data."})
	case plus && strings.HasPrefix(clientFirst, "y,"):
		// PostgreSQL's message and code for a client that could bind
		// but was made to believe the server cannot.
		return fail(&Error{Code: CodeInvalidAuthorization, Message: "SCRAM channel binding negotiation error",
			Detail: "The client supports SCRAM channel binding but thinks the server does not.  However, this server does support channel binding."})
	}
	serverFirst, err = conv.Step(clientFirst)
	if err != nil {
		return fail(malformedSCRAM(err))
	}
	if conv.AuthzID() != "" {
		// PostgreSQL's message and code (read_client_first_message in
		// auth-scram.c).
		return fail(&Error{Code: CodeFeatureNotSupported, Message: "client uses authorization identity, but it is not supported"})
	}

	if err := be.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		return fail(fmt.Errorf("set auth type: %w", err)) // cannot happen
	}
	be.Send(&pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)})
	if err := be.Flush(); err != nil {
		return fail(fmt.Errorf("send SASL continue: %w", err))
	}

	msg, err = receive(be, "SASL response")
	if err != nil {
		return fail(err)
	}
	response, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return fail(unexpected("SASL", msg))
	}
	serverFinal, err := conv.Step(string(response.Data))
	switch {
	case err != nil && serverFinal == scram.ErrInvalidProof:
		if reason == nil {
			reason = errWrongPassword
		}
		return fail(passwordFailed(user, reason))
	case err != nil && serverFinal == scram.ErrChannelBindingsDontMatch:
		// PostgreSQL's message and code (read_client_final_message):
		// the client's TLS connection ends somewhere else than at the
		// proxy's certificate, a man in the middle.
		return fail(&Error{Code: CodeProtocolViolation, Message: "SCRAM channel binding check failed", Err: err})
	case err != nil:
		return fail(malformedSCRAM(err))
	case reason != nil || !conv.Valid():
		// Cannot happen: mock keys come from a secret key, so no proof
		// matches them. Fail closed all the same.
		if reason == nil {
			reason = errWrongPassword
		}
		return fail(passwordFailed(user, reason))
	}

	be.Send(&pgproto3.AuthenticationSASLFinal{Data: []byte(serverFinal)})
	if err := be.Flush(); err != nil {
		return fail(fmt.Errorf("send SASL final: %w", err))
	}
	return clientFirst, serverFirst, string(response.Data), nil
}

// malformedSCRAM is PostgreSQL's answer to a SCRAM message it cannot accept
// (auth-scram.c reports those as protocol violations). It says nothing of
// the user, and happens before the proof is checked.
func malformedSCRAM(err error) *Error {
	return &Error{Code: CodeProtocolViolation, Message: "malformed SCRAM message", Err: err}
}
