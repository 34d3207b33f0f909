package auth

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
)

// fuzzVerifier is a fixed verifier of "pencil" (RFC 7677's example salt), so
// that a seeded exchange with fixed nonces has a valid proof.
const fuzzVerifier = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

const fuzzServerNonce = "3rfcNHYJY1ZVvWVs7j"

// fuzzConversation is a server conversation against fuzzVerifier whose
// server nonce is fixed.
func fuzzConversation(tb testing.TB) *scram.ServerConversation {
	creds := ParseSecret(fuzzVerifier).scram
	srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	if err != nil {
		tb.Fatal(err)
	}
	return srv.WithNonceGenerator(func() string { return fuzzServerNonce }).NewConversation()
}

// validSCRAMMessages computes a correct client-first and client-final for
// fuzzConversation, for the seed corpus.
func validSCRAMMessages(tb testing.TB, gs2 string) (first, final []byte) {
	client, err := scram.SHA256.NewClient("", "pencil", "")
	if err != nil {
		tb.Fatal(err)
	}
	client.WithNonceGenerator(func() string { return "rOprNGfwEbeRWgbNEkqO" })
	conv := client.NewConversation()
	if gs2 == "y" {
		conv = client.NewConversationAdvertisingChannelBinding()
	}
	c1, err := conv.Step("")
	if err != nil {
		tb.Fatal(err)
	}
	s1, err := fuzzConversation(tb).Step(c1)
	if err != nil {
		tb.Fatal(err)
	}
	c2, err := conv.Step(s1)
	if err != nil {
		tb.Fatal(err)
	}
	return []byte(c1), []byte(c2)
}

// encode appends the wire form of msgs.
func encode(tb testing.TB, msgs ...pgproto3.FrontendMessage) []byte {
	var buf []byte
	for _, m := range msgs {
		var err error
		if buf, err = m.Encode(buf); err != nil {
			tb.Fatal(err)
		}
	}
	return buf
}

// checkOutcome is what every exchange must end with, whatever the client
// sent: success, an *Error with one of the package's codes, or, since the
// input is a finite buffer, the end of the input.
func checkOutcome(t *testing.T, err error) {
	if err == nil {
		return
	}
	var authErr *Error
	if errors.As(err, &authErr) {
		switch authErr.Code {
		case CodeInvalidPassword, CodeInvalidAuthorization, CodeProtocolViolation, CodeFeatureNotSupported:
			return
		}
		t.Fatalf("unknown code %q: %v", authErr.Code, err)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("neither *Error nor end of input: %v (%T)", err, err)
	}
}

// FuzzSCRAM feeds arbitrary SCRAM payloads as the client's SASL messages.
// Only a correct proof may succeed.
func FuzzSCRAM(f *testing.F) {
	for _, gs2 := range []string{"n", "y"} {
		first, final := validSCRAMMessages(f, gs2)
		f.Add(first, final)
	}
	f.Add([]byte("n,,n=,r=abc"), []byte("c=biws,r=abc"+fuzzServerNonce+",p=AAAA"))
	f.Add([]byte("p=tls-server-end-point,,n=,r=abc"), []byte(""))
	f.Add([]byte("n,a=bob,n=user,r=abc"), []byte(""))
	f.Add([]byte(""), []byte(""))
	f.Fuzz(func(t *testing.T, first, final []byte) {
		in := encode(t,
			&pgproto3.SASLInitialResponse{AuthMechanism: mechanismSCRAM, Data: first},
			&pgproto3.SASLResponse{Data: final},
		)
		be := pgproto3.NewBackend(bytes.NewReader(in), io.Discard)
		conv := fuzzConversation(t)
		_, _, _, err := scramExchange(be, "user", conv, false, nil)
		checkOutcome(t, err)
		if err == nil && !conv.Valid() {
			t.Fatal("exchange succeeded without a valid proof")
		}
	})
}

// FuzzAuthenticate feeds arbitrary bytes as everything the client sends
// after the StartupMessage, under each method.
func FuzzAuthenticate(f *testing.F) {
	methods := []Method{MethodTrust, MethodPlain, MethodMD5, MethodSCRAM, "bogus"}
	first, final := validSCRAMMessages(f, "n")
	f.Add(uint8(1), encode(f, &pgproto3.PasswordMessage{Password: "pencil"}))
	f.Add(uint8(1), encode(f, &pgproto3.Query{String: "select 1"}))
	f.Add(uint8(2), encode(f, &pgproto3.PasswordMessage{Password: "md5" + "00112233445566778899aabbccddeeff"}))
	f.Add(uint8(3), encode(f, &pgproto3.SASLInitialResponse{AuthMechanism: mechanismSCRAM, Data: first}, &pgproto3.SASLResponse{Data: final}))
	f.Add(uint8(3), []byte{'p', 0x7f, 0xff, 0xff, 0xff})
	f.Add(uint8(0), []byte{})
	f.Fuzz(func(t *testing.T, method uint8, in []byte) {
		m := methods[int(method)%len(methods)]
		for _, user := range []struct {
			secret Secret
			found  bool
		}{
			{ParseSecret("pencil"), true},
			{ParseSecret(fuzzVerifier), true},
			{Secret{}, false},
		} {
			be := pgproto3.NewBackend(bytes.NewReader(in), io.Discard)
			checkOutcome(t, Authenticate(be, m, "user", user.secret, user.found))
		}
	})
}

// TestFuzzSeedsReachSuccess: the seeded valid exchanges do log in, so the
// fuzzer starts from the success path too.
func TestFuzzSeedsReachSuccess(t *testing.T) {
	for _, gs2 := range []string{"n", "y"} {
		first, final := validSCRAMMessages(t, gs2)
		in := encode(t,
			&pgproto3.SASLInitialResponse{AuthMechanism: mechanismSCRAM, Data: first},
			&pgproto3.SASLResponse{Data: final},
		)
		be := pgproto3.NewBackend(bytes.NewReader(in), io.Discard)
		if _, _, _, err := scramExchange(be, "user", fuzzConversation(t), false, nil); err != nil {
			t.Fatalf("gs2 %s: %v", gs2, err)
		}
	}
}
