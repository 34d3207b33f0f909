package auth

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testHBA = `# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             admin                                   trust
local   sameuser        all                                     md5
hostssl all             certuser        0.0.0.0/0               cert
host    "all"           app             127.0.0.1/32            scram-sha-256   # only a database named all
host    appdb,reports   app,"Bob"       127.0.0.1/32            password
host    appdb           @staff.txt      10.0.0.0 255.0.0.0      md5
hostnossl all           evil            all                     reject
host    replication     all             all                     trust
host    all             all             ::1/128                 md5
host    all             all             192.168.0.0/16          scram-sha-256
`

func TestHBAMatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hba.conf")
	os.WriteFile(path, []byte(testHBA), 0o600)
	os.WriteFile(filepath.Join(dir, "staff.txt"), []byte("alice, bob\ncarol # the boss\n"), 0o600)
	h, err := LoadHBA(path)
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name   string
		client HBAClient
		line   int    // 0: no match
		method Method // of the matching line
	}{
		{name: "local admin", client: HBAClient{Local: true, Database: "x", User: "admin"}, line: 2, method: MethodTrust},
		{name: "local sameuser", client: HBAClient{Local: true, Database: "bob", User: "bob"}, line: 3, method: MethodMD5},
		{name: "local other database", client: HBAClient{Local: true, Database: "appdb", User: "bob"}},
		{name: "cert over TLS", client: HBAClient{TLS: true, Addr: lo, Database: "appdb", User: "certuser"}, line: 4, method: MethodCert},
		{name: "cert line needs TLS", client: HBAClient{Addr: lo, Database: "appdb", User: "certuser"}},
		{name: "quoted all is a name", client: HBAClient{Addr: lo, Database: "all", User: "app"}, line: 5, method: MethodSCRAM},
		{name: "lists", client: HBAClient{Addr: lo, Database: "reports", User: "Bob"}, line: 6, method: MethodPlain},
		{name: "lists are exact", client: HBAClient{Addr: lo, Database: "reports", User: "bob"}},
		{name: "@file and address with mask", client: HBAClient{Addr: netip.MustParseAddr("10.1.2.3"), Database: "appdb", User: "carol"}, line: 7, method: MethodMD5},
		{name: "outside the mask", client: HBAClient{Addr: netip.MustParseAddr("11.1.2.3"), Database: "appdb", User: "carol"}},
		{name: "hostnossl reject", client: HBAClient{Addr: netip.MustParseAddr("8.8.8.8"), Database: "appdb", User: "evil"}, line: 8, method: MethodReject},
		{name: "hostnossl skips TLS", client: HBAClient{TLS: true, Addr: netip.MustParseAddr("8.8.8.8"), Database: "appdb", User: "evil"}},
		{name: "replication matches nothing", client: HBAClient{Addr: netip.MustParseAddr("8.8.8.8"), Database: "replication", User: "x"}},
		{name: "IPv6", client: HBAClient{Addr: netip.MustParseAddr("::1"), Database: "appdb", User: "x"}, line: 10, method: MethodMD5},
		{name: "IPv4-mapped IPv6 client", client: HBAClient{Addr: netip.MustParseAddr("::ffff:192.168.1.1"), Database: "appdb", User: "x"}, line: 11, method: MethodSCRAM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := h.Match(tt.client)
			if tt.line == 0 {
				if ok {
					t.Fatalf("matched line %d, want no match", r.Line)
				}
				return
			}
			if !ok || r.Line != tt.line || r.Method != tt.method {
				t.Fatalf("got line %d %s (%v), want line %d %s", r.Line, r.Method, ok, tt.line, tt.method)
			}
		})
	}
}

func TestHBAErrors(t *testing.T) {
	text := `host all all 10.0.0.1 md5
host all all host.example.com md5
host all all 10.0.0.0 255.0.255.0 md5
local all +admins md5
local samerole all md5
host all all all ldap
host all all all md5 clientcert=verify-full
host all all all cert
hostgssenc all all all md5
bogus all all md5
host all all 10.0.0.0/33 md5
local all all
host "all all all md5
host all, all all md5
local all @missing.txt md5
host all all samenet md5
`
	_, err := ParseHBA("hba.conf", text, func(string) ([]byte, error) { return nil, os.ErrNotExist })
	var he *HBAError
	if !errors.As(err, &he) {
		t.Fatalf("got %v, want an *HBAError", err)
	}
	lines := strings.Count(text, "\n")
	if len(he.Problems) != lines {
		t.Fatalf("got %d problems for %d bad lines:\n%s", len(he.Problems), lines, err)
	}
	for i, p := range he.Problems {
		if want := "hba.conf: line "; !strings.HasPrefix(p, want) {
			t.Fatalf("problem %d %q does not name the file and line", i, p)
		}
	}
	t.Log(err)
}

// FuzzParseHBA parses arbitrary hba files: no panic, and every rule it
// accepts has a connection type, a method and, for host lines, an address.
func FuzzParseHBA(f *testing.F) {
	f.Add(testHBA)
	f.Fuzz(func(t *testing.T, text string) {
		h, err := ParseHBA("hba.conf", text, func(string) ([]byte, error) { return []byte("a, b\nc"), nil })
		if err != nil {
			var he *HBAError
			if !errors.As(err, &he) || len(he.Problems) == 0 {
				t.Fatalf("error %v", err)
			}
			return
		}
		for _, r := range h.Rules {
			if r.Type == 0 || r.Method == "" {
				t.Fatalf("rule %+v", r)
			}
			if r.Type != ConnLocal && !r.AllAddrs && !r.Addr.IsValid() {
				t.Fatalf("host rule without address %+v", r)
			}
			h.Match(HBAClient{Addr: netip.MustParseAddr("10.0.0.1"), Database: "a", User: "b"})
		}
	})
}
