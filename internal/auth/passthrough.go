package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// SCRAM pass-through, as PgBouncer does it (src/scram.c, "SCRAM
// pass-through"): a client that logs in with SCRAM against a stored
// verifier (auth_file or auth_query) proves it knows ClientKey without
// sending it, yet the proof gives it away to whoever holds the verifier:
//
//	ClientSignature = HMAC(StoredKey, AuthMessage)
//	ClientProof     = ClientKey XOR ClientSignature
//	so ClientKey    = ClientProof XOR ClientSignature, checked by H(ClientKey) = StoredKey
//
// (RFC 5802 section 3). With ClientKey and the verifier's ServerKey the
// proxy can answer a server's SCRAM challenge for the same user as the
// client would, provided the server keeps the same verifier (same salt and
// iteration count): it never learns the password. SCRAMKeys holds those
// keys; it is what the server login uses when there is no clear-text
// password.

// SCRAMKeys are a client's SCRAM keys recovered from its proof, with the
// verifier's salt and iteration count. Never logged: String hides them.
type SCRAMKeys struct {
	clientKey, storedKey, serverKey []byte
	salt                            string // raw bytes
	iters                           int
}

func (k *SCRAMKeys) String() string { return "SCRAM keys" }

// ServerProof answers a server's SCRAM challenge: given the client-first
// message without its GS2 header, the server-first message and the
// client-final message without its proof, it returns the proof to send and
// the ServerSignature the server must answer with. It refuses a server
// whose salt or iteration count differs from the verifier's: the keys
// would not match (the password was set again on the server).
func (k *SCRAMKeys) ServerProof(clientFirstBare, serverFirst, clientFinalWithoutProof string) (proof, serverSignature []byte, err error) {
	attrs := scramAttrs(serverFirst)
	salt, err := base64.StdEncoding.DecodeString(attrs["s"])
	if err != nil || len(salt) == 0 {
		return nil, nil, errors.New("SCRAM pass-through: the server's challenge has no valid salt")
	}
	iters, err := strconv.Atoi(attrs["i"])
	if err != nil {
		return nil, nil, errors.New("SCRAM pass-through: the server's challenge has no valid iteration count")
	}
	if string(salt) != k.salt || iters != k.iters {
		return nil, nil, errors.New("SCRAM pass-through: the server's SCRAM verifier for this user differs from the proxy's (its salt or iteration count): the password was changed on the server; update the auth_file, or give the proxy the password")
	}
	authMessage := clientFirstBare + "," + serverFirst + "," + clientFinalWithoutProof
	sig := hmacSHA256(k.storedKey, authMessage)
	proof = make([]byte, len(sig))
	subtle.XORBytes(proof, k.clientKey, sig)
	return proof, hmacSHA256(k.serverKey, authMessage), nil
}

// recoverSCRAMKeys returns the keys a successful SCRAM exchange gave away,
// or nil when secret is not a SCRAM verifier (a plain password: the server
// login uses the password) or the messages cannot be read (cannot happen
// after the exchange accepted them).
func recoverSCRAMKeys(secret Secret, clientFirst, serverFirst, clientFinal string) *SCRAMKeys {
	if secret.kind != kindSCRAM {
		return nil
	}
	// client-first-message = gs2-header client-first-message-bare, the
	// header being "n,," "y,," or "p=...,a=...," (two commas).
	i := strings.IndexByte(clientFirst, ',')
	if i < 0 {
		return nil
	}
	j := strings.IndexByte(clientFirst[i+1:], ',')
	if j < 0 {
		return nil
	}
	bare := clientFirst[i+1+j+1:]
	p := strings.LastIndex(clientFinal, ",p=")
	if p < 0 {
		return nil
	}
	proof, err := base64.StdEncoding.DecodeString(clientFinal[p+3:])
	if err != nil || len(proof) != sha256.Size {
		return nil
	}
	c := secret.scram
	sig := hmacSHA256(c.StoredKey, bare+","+serverFirst+","+clientFinal[:p])
	clientKey := make([]byte, sha256.Size)
	subtle.XORBytes(clientKey, proof, sig)
	if h := sha256.Sum256(clientKey); !hmac.Equal(h[:], c.StoredKey) {
		return nil
	}
	return &SCRAMKeys{clientKey: clientKey, storedKey: c.StoredKey, serverKey: c.ServerKey, salt: c.Salt, iters: c.Iters}
}

// scramAttrs splits a SCRAM message into its attributes ("r", "s", ...).
func scramAttrs(msg string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(msg, ",") {
		if len(kv) >= 2 && kv[1] == '=' {
			out[kv[:1]] = kv[2:]
		}
	}
	return out
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// AuthenticateKeys is Authenticate, also returning the client's SCRAM keys
// when it logged in with SCRAM against a stored SCRAM verifier (nil
// otherwise), for a server login without the password. cb is the TLS
// connection's channel binding (TLSServerEndPoint), the zero value without
// TLS: SCRAM-SHA-256-PLUS is offered only with one.
func AuthenticateKeys(be *pgproto3.Backend, method Method, user string, secret Secret, found bool, cb ChannelBinding) (*SCRAMKeys, error) {
	var keys *SCRAMKeys
	err := authenticate(be, method, user, secret, found, &keys, cb)
	if err != nil {
		return nil, err
	}
	return keys, nil
}
