package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// auth_type = hba with auth_hba_file, in TOML and in pgbouncer.ini: the
// file is resolved against the config's directory and parsed at load, and
// every line it cannot use is a problem naming the key, the file and the
// line.
func TestAuthHBA(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "hba.conf", "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
	writeFile(t, dir, "userlist.txt", `"app" "apppass"`+"\n")

	c, err := Load(writeFile(t, dir, "pauseproxy.toml", "[proxy]\nauth_type = \"hba\"\nauth_hba_file = \"hba.conf\"\nauth_file = \"userlist.txt\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Proxy.AuthHBAFile != filepath.Join(dir, "hba.conf") || c.Proxy.HBA == nil || len(c.Proxy.HBA.Rules) != 2 {
		t.Fatalf("auth_hba_file %q, rules %+v", c.Proxy.AuthHBAFile, c.Proxy.HBA)
	}

	ini := writeFile(t, dir, "pgbouncer.ini", "[databases]\napp = host=127.0.0.1\n[pgbouncer]\nauth_type = hba\nauth_hba_file = hba.conf\nauth_file = userlist.txt\n")
	c, err = LoadPgBouncerINI(ini)
	if err != nil {
		t.Fatal(err)
	}
	if c.Proxy.AuthType != AuthHBA || c.Proxy.HBA == nil || len(c.Proxy.HBA.Rules) != 2 {
		t.Fatalf("from the ini: auth_type %q, rules %+v", c.Proxy.AuthType, c.Proxy.HBA)
	}
	for _, w := range c.Warnings {
		if strings.Contains(w, "auth_hba_file") {
			t.Fatalf("warning %q", w)
		}
	}

	t.Run("problems", func(t *testing.T) {
		bad := writeFile(t, dir, "bad.conf", "host all all 10.0.0.1 md5\nlocal all all ldap\n")
		toml := writeFile(t, dir, "bad.toml", "[proxy]\nauth_type = \"hba\"\nauth_hba_file = \"bad.conf\"\nauth_file = \"userlist.txt\"\n")
		_, err := Load(toml)
		assertProblems(t, problemsOf(t, err), []string{
			toml + ": proxy.auth_hba_file: " + bad + `: line 1: address "10.0.0.1" needs a mask: write 10.0.0.1/32 or 10.0.0.1 255.255.255.255`,
			toml + ": proxy.auth_hba_file: " + bad + `: line 2: authentication method "ldap" is not supported (want trust, reject, md5, password, scram-sha-256 or cert)`,
		})
		_, err = loadString(t, "[proxy]\nauth_type = \"hba\"\n")
		if p := problemsOf(t, err); len(p) != 1 || !strings.HasSuffix(p[0], `proxy.auth_hba_file: must be set when auth_type = "hba"`) {
			t.Fatalf("without auth_hba_file: %q", p)
		}
	})
}
