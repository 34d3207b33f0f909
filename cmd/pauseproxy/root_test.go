package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pauseproxy/pauseproxy/internal/config"
)

func TestCheckRoot(t *testing.T) {
	for _, tc := range []struct {
		name      string
		uid       int
		flag      bool
		setting   bool
		file      string
		wantError string // "" for none
	}{
		{name: "root refused", uid: 0, file: "/etc/pauseproxy/pauseproxy.toml",
			wantError: "override with --allow-root or allow_root = true in [proxy] of /etc/pauseproxy/pauseproxy.toml"},
		{name: "root refused, ini", uid: 0, file: "/etc/pgbouncer/pgbouncer.ini",
			wantError: "allow_root = true in [pgbouncer] of /etc/pgbouncer/pgbouncer.ini"},
		{name: "root with --allow-root", uid: 0, flag: true, file: "a.toml"},
		{name: "root with allow_root", uid: 0, setting: true, file: "a.toml"},
		{name: "not root", uid: 1000, file: "a.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{File: tc.file, Proxy: config.Proxy{AllowRoot: tc.setting}}
			err := checkRoot(tc.uid, tc.flag, cfg)
			switch {
			case tc.wantError == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.wantError != "" && (err == nil || !strings.Contains(err.Error(), tc.wantError)):
				t.Errorf("error %v, want one containing %q", err, tc.wantError)
			}
		})
	}
}

// TestServeRefusesRoot: as root, the proxy exits 1 before listening and
// says how to override; check-config does not care who runs it.
func TestServeRefusesRoot(t *testing.T) {
	old := geteuid
	geteuid = func() int { return 0 }
	defer func() { geteuid = old }()
	dir := t.TempDir()
	path, _ := writeConfig(t, dir, 1)
	var out, errb bytes.Buffer
	if code := run([]string{"--config", path}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "refusing to run as root") || !strings.Contains(errb.String(), "--allow-root") {
		t.Fatalf("as root: exit %d:\n%s", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"check-config", path}, &out, &errb); code != 0 {
		t.Fatalf("check-config as root: exit %d:\n%s", code, errb.String())
	}
}

// TestAllowRootSetting: allow_root = true in the file lets the binary
// serve as root without the flag (the tests run as root; as another user
// it serves anyway).
func TestAllowRootSetting(t *testing.T) {
	dir := t.TempDir()
	path, port := writeConfig(t, dir, 1)
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	body = bytes.Replace(body, []byte("[proxy]\n"), []byte("[proxy]\nallow_root = true\n"), 1)
	if err := os.WriteFile(filepath.Join(dir, "pauseproxy.toml"), body, 0o600); err != nil {
		t.Fatal(err)
	}
	startBinaryArgs(t, port, "--config", path)
}
