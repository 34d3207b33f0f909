package auth

import (
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

// scramPair runs one SCRAM exchange between a client knowing password and
// a server holding creds, and returns its three messages.
func scramPair(t *testing.T, password string, creds scram.StoredCredentials) (clientFirst, serverFirst, clientFinal string) {
	t.Helper()
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	if err != nil {
		t.Fatal(err)
	}
	cc, sc := client.NewConversation(), srv.NewConversation()
	if clientFirst, err = cc.Step(""); err != nil {
		t.Fatal(err)
	}
	if serverFirst, err = sc.Step(clientFirst); err != nil {
		t.Fatal(err)
	}
	if clientFinal, err = cc.Step(serverFirst); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Step(clientFinal); err != nil || !sc.Valid() {
		t.Fatalf("the reference exchange failed: %v", err)
	}
	return clientFirst, serverFirst, clientFinal
}

// The keys recovered from a client's proof against the proxy's verifier
// log in to a server holding the same verifier, and check the server's
// signature; the password is never needed.
func TestSCRAMPassThrough(t *testing.T) {
	const password = "correct horse battery staple"
	verifier := ParseSecret(mustVerifier(t, password))
	if verifier.kind != kindSCRAM {
		t.Fatalf("secret kind %v", verifier)
	}
	cf, sf, fin := scramPair(t, password, verifier.scram)
	keys := recoverSCRAMKeys(verifier, cf, sf, fin)
	if keys == nil {
		t.Fatal("no keys recovered from a valid exchange")
	}

	// The "server" (PostgreSQL) holds the same verifier; the proxy is its
	// client with a nonce of its own and no password.
	srv, _ := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return verifier.scram, nil })
	conv := srv.NewConversation()
	clientFirstBare := "n=,r=proxynonce0123456789"
	serverFirst, err := conv.Step("n,," + clientFirstBare)
	if err != nil {
		t.Fatal(err)
	}
	withoutProof := "c=biws,r=" + scramAttrs(serverFirst)["r"]
	proof, wantSig, err := keys.ServerProof(clientFirstBare, serverFirst, withoutProof)
	if err != nil {
		t.Fatal(err)
	}
	serverFinal, err := conv.Step(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof))
	if err != nil || !conv.Valid() {
		t.Fatalf("the server refused the pass-through proof: %v", err)
	}
	if got := strings.TrimPrefix(serverFinal, "v="); got != base64.StdEncoding.EncodeToString(wantSig) {
		t.Errorf("server signature %s, want %s", got, base64.StdEncoding.EncodeToString(wantSig))
	}

	// A server whose verifier was set again (another salt) is refused
	// before anything is sent.
	other := ParseSecret(mustVerifier(t, password))
	srv2, _ := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return other.scram, nil })
	sf2, err := srv2.NewConversation().Step("n,," + clientFirstBare)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := keys.ServerProof(clientFirstBare, sf2, "c=biws,r="+scramAttrs(sf2)["r"]); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("a server with another salt: err %v, want a refusal", err)
	}

	// No keys from a plain password secret (the login uses the password),
	// nor from a proof that does not match.
	cf, sf, fin = scramPair(t, password, verifier.scram)
	if k := recoverSCRAMKeys(ParseSecret(password), cf, sf, fin); k != nil {
		t.Error("keys recovered for a plain password secret")
	}
	bad := fin[:strings.LastIndex(fin, ",p=")+3] + base64.StdEncoding.EncodeToString(make([]byte, 32))
	if k := recoverSCRAMKeys(verifier, cf, sf, bad); k != nil {
		t.Error("keys recovered from a wrong proof")
	}
	if s := keys.String(); strings.Contains(s, base64.StdEncoding.EncodeToString(keys.clientKey)) {
		t.Errorf("String shows the key: %s", s)
	}
}

// mustVerifier makes a SCRAM-SHA-256 verifier for password with a random
// salt, in PostgreSQL's text form.
func mustVerifier(t *testing.T, password string) string {
	t.Helper()
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		t.Fatal(err)
	}
	creds, err := scramCredentials(password, scram.KeyFactors{Salt: string(salt), Iters: defaultIterations})
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString
	return "SCRAM-SHA-256$4096:" + enc(salt) + "$" + enc(creds.StoredKey) + ":" + enc(creds.ServerKey)
}
