package deploy

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
)

// unitFile is a systemd unit: section -> key -> values in order (a key may
// be repeated; an empty assignment is kept as "").
type unitFile map[string]map[string][]string

// parseUnit reads a unit file as systemd does for what ours uses: [Section]
// headers, Key=Value lines, # and ; comments, backslash continuations.
func parseUnit(file string) (unitFile, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	n := 0
	var cont strings.Builder
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cont.Len() == 0 && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cont.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		line = cont.String() + line
		cont.Reset()
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("%s:%d: want Key=Value inside a [Section]: %q", file, n, line)
		}
		k = strings.TrimSpace(k)
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	return u, sc.Err()
}

// one returns the last value of key (systemd: the last assignment wins for
// single-valued keys) and whether it is set.
func (u unitFile) one(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// systemdDuration parses a systemd time span: "30", "30s", "1min 30s",
// "500ms"; a bare number is seconds.
func systemdDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	units := map[string]time.Duration{
		"ms": time.Millisecond, "s": time.Second, "sec": time.Second,
		"m": time.Minute, "min": time.Minute, "h": time.Hour, "hr": time.Hour,
	}
	var total time.Duration
	parts := regexp.MustCompile(`(\d+)\s*([a-z]+)`).FindAllStringSubmatch(s, -1)
	if len(parts) == 0 {
		return 0, fmt.Errorf("time span %q", s)
	}
	for _, p := range parts {
		n, _ := strconv.Atoi(p[1])
		unit, ok := units[p[2]]
		if !ok {
			return 0, fmt.Errorf("time span %q: unit %q", s, p[2])
		}
		total += time.Duration(n) * unit
	}
	return total, nil
}

// readEnvFile reads KEY=value lines (systemd's EnvironmentFile= format,
// without the quoting we do not use).
func readEnvFile(t *testing.T, file string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q: want KEY=value", file, line)
		}
		env[k] = v
	}
	return env
}

// secretEnvVars lists the environment variables a config reads secrets
// from.
func secretEnvVars(cfg *config.Config) []string {
	vars := []string{cfg.Proxy.HTTPTokenEnv}
	for _, u := range cfg.Users {
		vars = append(vars, u.PasswordEnv)
	}
	for _, d := range cfg.Databases {
		vars = append(vars, d.PasswordEnv, d.ConsulTokenEnv)
	}
	vars = slices.DeleteFunc(vars, func(s string) bool { return s == "" })
	slices.Sort(vars)
	return slices.Compact(vars)
}

func TestSystemdUnit(t *testing.T) {
	dir := filepath.Join(repoRoot, "deploy", "systemd")
	unitPath := filepath.Join(dir, "pauseproxy.service")
	u, err := parseUnit(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	get := func(key string) string {
		v, ok := u.one("Service", key)
		if !ok {
			t.Errorf("[Service] %s is not set", key)
		}
		return v
	}

	// ExecStart reads the config the image reads, the one installed from
	// deploy/systemd/pauseproxy.toml.
	start := strings.Fields(get("ExecStart"))
	configPath := imageConfigPath(t)
	if len(start) != 3 || !filepath.IsAbs(start[0]) || filepath.Base(start[0]) != "pauseproxy" || start[1] != "--config" || start[2] != configPath {
		t.Errorf("ExecStart=%s: want /path/to/pauseproxy --config %s", strings.Join(start, " "), configPath)
	}
	if v := get("Type"); v != "simple" && v != "exec" {
		t.Errorf("Type=%s: pauseproxy does not speak sd_notify; want simple or exec", v)
	}
	// Reload: check the config (so `systemctl reload` fails on a bad one),
	// then SIGHUP.
	reloads := u["Service"]["ExecReload"]
	if len(reloads) == 0 || reloads[len(reloads)-1] != "/bin/kill -HUP $MAINPID" {
		t.Errorf("ExecReload=%q: the last one must be /bin/kill -HUP $MAINPID", reloads)
	}
	for _, r := range reloads[:max(len(reloads)-1, 0)] {
		if f := strings.Fields(r); len(start) == 3 && !slices.Equal(f, []string{start[0], "check-config", configPath}) {
			t.Errorf("ExecReload=%s: want %s check-config %s", r, start[0], configPath)
		}
	}
	if v := get("KillSignal"); v != "SIGTERM" {
		t.Errorf("KillSignal=%s: SIGTERM is the drain", v)
	}
	if v := get("Restart"); v != "on-failure" {
		t.Errorf("Restart=%s, want on-failure", v)
	}

	// Hardening.
	for key, want := range map[string]string{
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"DynamicUser":             "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
	} {
		if got, ok := u.one("Service", key); !ok || got != want {
			t.Errorf("[Service] %s=%q, want %q", key, got, want)
		}
	}
	if f := u["Service"]["SystemCallFilter"]; len(f) == 0 || f[0] != "@system-service" {
		t.Errorf("SystemCallFilter=%q: want @system-service first", f)
	}

	// The config: validates with the secrets the EnvironmentFile example
	// gives, and agrees with the unit.
	envFile := get("EnvironmentFile")
	if !filepath.IsAbs(strings.TrimPrefix(envFile, "-")) || filepath.Dir(strings.TrimPrefix(envFile, "-")) != filepath.Dir(configPath) {
		t.Errorf("EnvironmentFile=%s: want a file next to the config, in %s", envFile, filepath.Dir(configPath))
	}
	env := readEnvFile(t, filepath.Join(dir, "pauseproxy.env.example"))
	runtimeDir := "/run/" + get("RuntimeDirectory")
	text, err := os.ReadFile(filepath.Join(dir, "pauseproxy.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := checkConfig(t, string(text), env, t.TempDir(), []string{runtimeDir})
	for _, v := range secretEnvVars(cfg) {
		if _, ok := env[v]; !ok {
			t.Errorf("pauseproxy.toml reads %s, which pauseproxy.env.example does not set", v)
		}
	}
	if d := cfg.Proxy.UnixSocketDir; d != "" && d != runtimeDir {
		// ProtectSystem=strict leaves only the RuntimeDirectory writable,
		// and PrivateTmp hides /tmp from the clients.
		t.Errorf("unix_socket_dir %s: want the unit's RuntimeDirectory %s", d, runtimeDir)
	}
	stop, err := systemdDuration(get("TimeoutStopSec"))
	if err != nil {
		t.Fatal(err)
	}
	if stop <= cfg.Proxy.ShutdownTimeout {
		t.Errorf("TimeoutStopSec %v <= shutdown_timeout %v: systemd would SIGKILL mid-drain", stop, cfg.Proxy.ShutdownTimeout)
	}
	// A client and a server connection per client, at worst, plus room.
	if n, err := strconv.Atoi(get("LimitNOFILE")); err != nil || n < 2*cfg.Proxy.MaxClientConn+100 {
		t.Errorf("LimitNOFILE=%s: want at least 2 x max_client_conn (%d) + 100", get("LimitNOFILE"), cfg.Proxy.MaxClientConn)
	}
}

// TestSystemdAnalyzeVerify asks systemd itself: unknown keys, misspelt
// system call groups and a missing ExecStart binary are reported there.
func TestSystemdAnalyzeVerify(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd); TestSystemdUnit checks the unit without it")
	}
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "systemd", "pauseproxy.service"))
	if err != nil {
		t.Fatal(err)
	}
	// The binary where the unit expects it: the one the image ships.
	unit := strings.ReplaceAll(string(data), "/usr/local/bin/pauseproxy", bin)
	file := filepath.Join(t.TempDir(), "pauseproxy.service")
	if err := os.WriteFile(file, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "verify", file).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
