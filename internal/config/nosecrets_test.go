package config

import (
	"strings"
	"testing"
)

// With NoSecrets, the secrets a file names but does not hold may be
// missing: warnings, each naming its key and file, and empty values.
// Everything else is checked as usual.
func TestNoSecrets(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "cert.pem", "cert")
	body := `[proxy]
auth_type = "scram-sha-256"
auth_file = "missing-userlist.txt"
http_listen = "127.0.0.1:9930"
http_token_env = "PP_TEST_UNSET_TOKEN"
client_tls_sslmode = "require"
client_tls_cert_file = "cert.pem"
client_tls_key_file = "missing-key.pem"

[databases.app]
password_file = "missing-password"

[users.app]
password_env = "PP_TEST_UNSET_PASSWORD"
`
	path := writeFile(t, dir, "pauseproxy.toml", body)
	wantKeys := []string{
		"proxy.http_token_env: environment variable PP_TEST_UNSET_TOKEN is not set",
		"proxy.client_tls_key_file: ",
		"proxy.auth_file: ",
		"databases.app.password_file: ",
		"users.app.password_env: environment variable PP_TEST_UNSET_PASSWORD is not set",
	}

	// Without the option: one problem each.
	_, err := Load(path)
	problems := strings.Join(problemsOf(t, err), "\n")
	for _, k := range wantKeys {
		if !strings.Contains(problems, "pauseproxy.toml: "+k) {
			t.Errorf("no problem %q in:\n%s", k, problems)
		}
	}

	c, err := LoadWith(path, LoadOptions{NoSecrets: true})
	if err != nil {
		t.Fatalf("with NoSecrets: %v", err)
	}
	warnings := strings.Join(c.Warnings, "\n")
	for _, k := range wantKeys {
		if !strings.Contains(warnings, "pauseproxy.toml: "+k) {
			t.Errorf("no warning %q in:\n%s", k, warnings)
		}
	}
	if strings.Count(warnings, "(not required: secrets are not checked)") != len(wantKeys) {
		t.Errorf("warnings do not say the secrets were not required:\n%s", warnings)
	}
	if c.Proxy.HTTPToken != "" || c.Users["app"].Password != "" || c.Databases["app"].Password != "" {
		t.Errorf("a missing secret got a value")
	}

	// What is not a secret is still checked: a certificate, a port, a key
	// that names no variable, and unknown keys.
	writeFile(t, dir, "bad.toml", strings.Replace(body, `client_tls_cert_file = "cert.pem"`, `client_tls_cert_file = "missing-cert.pem"`+"\nlisten_port = 70000\nbogus = 1", 1)+"\n[users.bob]\npassword_env = \"\"\n")
	_, err = LoadWith(dir+"/bad.toml", LoadOptions{NoSecrets: true})
	problems = strings.Join(problemsOf(t, err), "\n")
	for _, want := range []string{"bad.toml: proxy.client_tls_cert_file: ", "bad.toml: proxy.listen_port: must be 1..65535", "bad.toml: proxy.bogus: unknown key", "bad.toml: users.bob.password_env: must name an environment variable"} {
		if !strings.Contains(problems, want) {
			t.Errorf("no problem %q in:\n%s", want, problems)
		}
	}

	// The same for a pgbouncer.ini and its auth_file.
	ini := writeFile(t, dir, "pgbouncer.ini", "[databases]\napp = host=127.0.0.1\n[pgbouncer]\nlisten_addr = 127.0.0.1\nauth_type = md5\nauth_file = /nonexistent/userlist.txt\n")
	if _, err := LoadPgBouncerINI(ini); err == nil {
		t.Error("pgbouncer.ini with a missing auth_file loaded without NoSecrets")
	}
	c, err = LoadPgBouncerINIWith(ini, LoadOptions{NoSecrets: true})
	if err != nil {
		t.Fatalf("pgbouncer.ini with NoSecrets: %v", err)
	}
	if w := strings.Join(c.Warnings, "\n"); !strings.Contains(w, "pgbouncer.ini: pgbouncer.auth_file: /nonexistent/userlist.txt: cannot read") {
		t.Errorf("no auth_file warning:\n%s", w)
	}
}
