package config

import (
	"strings"
	"testing"
)

// Keys read but not applied yet warn, naming key and file, in TOML and in
// a pgbouncer.ini.
func TestNotYetSupportedWarn(t *testing.T) {
	c, err := loadString(t, trust+"application_name_add_host = true\n[databases.app]\nconnect_query = \"SET x = 1\"\n")
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings, "\n")
	for _, want := range []string{
		"pauseproxy.toml: proxy.application_name_add_host: not supported yet",
		"pauseproxy.toml: databases.app.connect_query: not supported yet",
	} {
		if !strings.Contains(w, want) {
			t.Errorf("no warning %q in:\n%s", want, w)
		}
	}
	c, err = LoadPgBouncerINI(writeFile(t, t.TempDir(), "pgbouncer.ini", "[databases]\napp = host=127.0.0.1 connect_query='SET x = 1'\n[pgbouncer]\nauth_type = trust\napplication_name_add_host = 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	w = strings.Join(c.Warnings, "\n")
	for _, want := range []string{
		"pgbouncer.ini: pgbouncer.application_name_add_host: not supported yet",
		"pgbouncer.ini: databases.app.connect_query: not supported yet",
	} {
		if !strings.Contains(w, want) {
			t.Errorf("no warning %q in:\n%s", want, w)
		}
	}
}
