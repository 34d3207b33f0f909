package router

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// SCRAM pass-through on the server side: logging in to the server as a
// client's user without its password, with the keys the client's own SCRAM
// login gave away (package auth, PgBouncer's scram.c approach).
//
// pgconn only knows passwords, and it is what sets up TLS and reads the
// server's parameters. So pgconn logs in with a stand-in password, through
// a frontend whose bytes pass a scramShim (BuildFrontend): the shim
// replaces pgconn's proof in the client-final-message by the one the keys
// give, checks the server's signature against the real ServerKey, and
// replaces it by the one pgconn expects from the stand-in password. Both
// are base64 of 32 bytes, so no message changes length. Once the exchange
// is over the shim passes bytes untouched; after Hijack the proxy reads
// and writes the connection itself and the shim is out of the way.

// ServerSCRAM answers a server's SCRAM challenge for a user without the
// password (auth.SCRAMKeys).
type ServerSCRAM interface {
	// ServerProof returns the ClientProof for the exchange made of
	// clientFirstBare, serverFirst and clientFinalWithoutProof, and the
	// ServerSignature the server must answer with.
	ServerProof(clientFirstBare, serverFirst, clientFinalWithoutProof string) (proof, serverSignature []byte, err error)
}

// standInPassword is what pgconn is given when the shim answers for it.
const standInPassword = "pauseproxy-scram-pass-through"

// scramPassThrough makes cfg log in with keys when the login has SCRAM
// keys and no password.
func scramPassThrough(cfg *pgconn.Config, login serverLogin) {
	if login.SCRAM == nil || login.Password != "" {
		return
	}
	cfg.Password = standInPassword
	keys := login.SCRAM
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		sh := &scramShim{keys: keys}
		return pgproto3.NewFrontend(&shimReader{sh: sh, r: r}, &shimWriter{sh: sh, w: w})
	}
}

// Authentication request codes (PostgreSQL docs 55.7, "Message Formats").
const (
	authOK           = 0
	authSASL         = 10
	authSASLContinue = 11
	authSASLFinal    = 12
)

// scramShim is the state both directions share. pgconn may read on a
// background goroutine while it writes, hence the lock.
type scramShim struct {
	keys ServerSCRAM

	mu              sync.Mutex // guards the fields below
	done            bool       // the exchange is over: pass everything
	err             error      // why the login cannot go on
	sasl            bool       // the server asked for SASL
	sentInitial     bool
	clientFirstBare string
	serverFirst     string
	salt            []byte
	iters           int
	wantSig         string // base64 ServerSignature the real server must send
	fakeSig         string // base64 ServerSignature pgconn expects
}

func (sh *scramShim) fail(err error) error {
	if sh.err == nil {
		sh.err = err
	}
	return sh.err
}

// shimWriter sees what pgconn sends: the StartupMessage (untyped), then
// typed messages, whole ones per Write (pgproto3 flushes its buffer).
type shimWriter struct {
	sh      *scramShim
	w       io.Writer
	started bool   // the StartupMessage went out
	buf     []byte // an incomplete message held back
}

func (sw *shimWriter) Write(p []byte) (int, error) {
	sh := sw.sh
	sh.mu.Lock()
	if sh.done && len(sw.buf) == 0 {
		sh.mu.Unlock()
		return sw.w.Write(p)
	}
	if sh.err != nil {
		err := sh.err
		sh.mu.Unlock()
		return 0, err
	}
	sw.buf = append(sw.buf, p...)
	var out []byte
	for {
		n, typed := sw.next()
		if n == 0 {
			break
		}
		msg := sw.buf[:n]
		if typed && msg[0] == 'p' && !sh.done {
			if err := sh.clientMessage(msg); err != nil {
				sh.mu.Unlock()
				return 0, err
			}
		}
		out = append(out, msg...)
		sw.buf = sw.buf[n:]
	}
	sw.buf = append([]byte(nil), sw.buf...)
	sh.mu.Unlock()
	if len(out) > 0 {
		if _, err := sw.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// next returns the length of the first complete message in buf (0: none
// yet) and whether it is typed.
func (sw *shimWriter) next() (int, bool) {
	off := 1
	if !sw.started {
		off = 0
	}
	if len(sw.buf) < off+4 {
		return 0, false
	}
	n := off + int(binary.BigEndian.Uint32(sw.buf[off:]))
	if n < off+4 || len(sw.buf) < n {
		return 0, false
	}
	typed := sw.started
	sw.started = true
	return n, typed
}

// clientMessage handles a 'p' message: SASLInitialResponse, then
// SASLResponse, whose proof it replaces. Called with mu held.
func (sh *scramShim) clientMessage(msg []byte) error {
	if !sh.sasl {
		// A PasswordMessage: the server asked for a clear-text or MD5
		// password, which the proxy does not have.
		return sh.fail(errors.New("SCRAM pass-through: the server asks for a password, not SCRAM: set scram-sha-256 for this user in its pg_hba.conf, or give the proxy the password"))
	}
	body := msg[5:]
	if !sh.sentInitial {
		// SASLInitialResponse: mechanism, int32 length, client-first.
		i := bytes.IndexByte(body, 0)
		if i < 0 || len(body) < i+5 {
			return sh.fail(errors.New("SCRAM pass-through: unexpected SASLInitialResponse"))
		}
		first := string(body[i+5:])
		// The GS2 header ("n,," "y,," "p=tls-server-end-point,,") ends
		// at the second comma.
		c1 := bytes.IndexByte([]byte(first), ',')
		c2 := -1
		if c1 >= 0 {
			if j := bytes.IndexByte([]byte(first[c1+1:]), ','); j >= 0 {
				c2 = c1 + 1 + j
			}
		}
		if c2 < 0 {
			return sh.fail(errors.New("SCRAM pass-through: unexpected client-first-message"))
		}
		sh.clientFirstBare = first[c2+1:]
		sh.sentInitial = true
		return nil
	}
	// SASLResponse: the client-final-message.
	p := bytes.LastIndex(body, []byte(",p="))
	if p < 0 || sh.serverFirst == "" {
		return sh.fail(errors.New("SCRAM pass-through: unexpected client-final-message"))
	}
	without := string(body[:p])
	oldProof := body[p+3:]
	proof, sig, err := sh.keys.ServerProof(sh.clientFirstBare, sh.serverFirst, without)
	if err != nil {
		return sh.fail(err)
	}
	newProof := base64.StdEncoding.EncodeToString(proof)
	if len(newProof) != len(oldProof) {
		return sh.fail(errors.New("SCRAM pass-through: unexpected proof length"))
	}
	copy(oldProof, newProof)
	sh.wantSig = base64.StdEncoding.EncodeToString(sig)
	// What pgconn will check, from the stand-in password (RFC 5802:
	// ServerSignature = HMAC(HMAC(SaltedPassword, "Server Key"), AuthMessage)).
	salted, err := pbkdf2.Key(sha256.New, standInPassword, sh.salt, sh.iters, sha256.Size)
	if err != nil {
		return sh.fail(fmt.Errorf("SCRAM pass-through: %w", err))
	}
	serverKey := hmacSum(salted, []byte("Server Key"))
	sh.fakeSig = base64.StdEncoding.EncodeToString(hmacSum(serverKey, []byte(sh.clientFirstBare+","+sh.serverFirst+","+without)))
	return nil
}

func hmacSum(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// shimReader sees what the server sends; until the exchange is over it
// hands pgconn whole messages only, so that it can rewrite the
// server-final-message.
type shimReader struct {
	sh  *scramShim
	r   io.Reader
	in  []byte // read, not yet a whole message
	out []byte // ready for pgconn
}

func (sr *shimReader) Read(p []byte) (int, error) {
	for len(sr.out) == 0 {
		sr.sh.mu.Lock()
		done := sr.sh.done
		sr.sh.mu.Unlock()
		if done && len(sr.in) == 0 {
			return sr.r.Read(p)
		}
		if done {
			sr.out, sr.in = sr.in, nil
			break
		}
		var tmp [4096]byte
		n, err := sr.r.Read(tmp[:])
		sr.in = append(sr.in, tmp[:n]...)
		if perr := sr.process(); perr != nil {
			return 0, perr
		}
		if len(sr.out) == 0 && err != nil {
			return 0, err
		}
	}
	n := copy(p, sr.out)
	sr.out = sr.out[n:]
	return n, nil
}

// process moves the whole messages of in to out, looking at the
// authentication requests.
func (sr *shimReader) process() error {
	sh := sr.sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for !sh.done && len(sr.in) >= 5 {
		n := 1 + int(binary.BigEndian.Uint32(sr.in[1:5]))
		if n < 5 {
			return sh.fail(errors.New("SCRAM pass-through: bad message length from the server"))
		}
		if len(sr.in) < n {
			break
		}
		msg := sr.in[:n]
		if msg[0] == 'R' && n >= 9 {
			if err := sh.serverMessage(binary.BigEndian.Uint32(msg[5:9]), msg[9:]); err != nil {
				return err
			}
		}
		sr.out = append(sr.out, msg...)
		sr.in = sr.in[n:]
	}
	if sh.done {
		sr.out = append(sr.out, sr.in...)
		sr.in = nil
	}
	return nil
}

// serverMessage handles an authentication request. Called with mu held.
func (sh *scramShim) serverMessage(code uint32, data []byte) error {
	switch code {
	case authSASL:
		sh.sasl = true
	case authSASLContinue:
		sh.serverFirst = string(data)
		for _, kv := range bytes.Split(data, []byte(",")) {
			switch {
			case bytes.HasPrefix(kv, []byte("s=")):
				salt, err := base64.StdEncoding.DecodeString(string(kv[2:]))
				if err != nil {
					return sh.fail(errors.New("SCRAM pass-through: bad salt from the server"))
				}
				sh.salt = salt
			case bytes.HasPrefix(kv, []byte("i=")):
				sh.iters, _ = strconv.Atoi(string(kv[2:]))
			}
		}
	case authSASLFinal:
		got, ok := bytes.CutPrefix(data, []byte("v="))
		if !ok || sh.wantSig == "" || !hmac.Equal(got, []byte(sh.wantSig)) {
			return sh.fail(errors.New("SCRAM pass-through: the server's signature does not match the stored verifier: it is not the server it claims to be"))
		}
		copy(got, sh.fakeSig)
		sh.done = true
	case authOK:
		sh.done = true
	}
	return nil
}
