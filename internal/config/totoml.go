package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ToTOML writes c as pauseproxy TOML (pauseproxy convert): every key whose
// value differs from its default, durations as strings, c's warnings as
// comments at the top. Load of the result gives c back (File and Warnings
// aside).
//
// A secret read from the environment or a file is written as its
// password_env/password_file (consul_token_*, patroni_password_*, ...); a
// secret given inline in the source is written inline, with a comment
// suggesting one of the other forms. The output must then be protected like
// the source.
func ToTOML(c *Config) string {
	var w strings.Builder
	fmt.Fprintf(&w, "# pauseproxy configuration")
	if c.File != "" {
		fmt.Fprintf(&w, ", generated from %s", c.File)
	}
	w.WriteString(".\n# Keys left out have their default values; config.example.toml documents them all.\n")
	for _, warning := range c.Warnings {
		fmt.Fprintf(&w, "# warning: %s\n", oneLine(warning))
	}

	w.WriteString("\n[proxy]\n")
	def := defaultProxy()
	proxySkip := map[string]bool{}
	skipSecret(proxySkip, "http_token", c.Proxy.HTTPToken, c.Proxy.HTTPTokenEnv, c.Proxy.HTTPTokenFile)
	skipSecret(proxySkip, "consul_register_token", c.Proxy.ConsulRegisterToken, c.Proxy.ConsulRegisterTokenEnv, c.Proxy.ConsulRegisterTokenFile)
	writeFields(&w, proxyFields, &c.Proxy, &def, proxySkip)

	for _, name := range sortedKeys(c.Databases) {
		d := c.Databases[name]
		fmt.Fprintf(&w, "\n[%s]\n", keyOf([]string{"databases", name}))
		def := defaultDatabase(&c.Proxy, name, d.Discovery)
		def.Discovery = DiscoveryStatic // the other defaults depend on it, but it has its own
		skip := map[string]bool{}
		// host/port or hosts: Host and Port are the first of Hosts, whose
		// entries all carry their port.
		if d.Discovery == DiscoveryStatic {
			several := len(d.Hosts) > 1
			skip["hosts"], skip["host"], skip["port"] = !several, several, several
		}
		skipSecret(skip, "password", d.Password, d.PasswordEnv, d.PasswordFile)
		skipSecret(skip, "consul_token", d.ConsulToken, d.ConsulTokenEnv, d.ConsulTokenFile)
		skipSecret(skip, "patroni_password", d.PatroniPassword, d.PatroniPasswordEnv, d.PatroniPasswordFile)
		writeFields(&w, databaseFields, d, &def, skip)
	}

	for _, name := range sortedKeys(c.Users) {
		u := c.Users[name]
		fmt.Fprintf(&w, "\n[%s]\n", keyOf([]string{"users", name}))
		skip := map[string]bool{}
		skipSecret(skip, "password", u.Password, u.PasswordEnv, u.PasswordFile)
		writeFields(&w, userFields, u, &User{}, skip)
	}
	writePeers(&w, c.CancelPeers)
	return w.String()
}

// skipSecret decides which form of a secret to write: the _env or _file
// it came from, else the inline value.
func skipSecret(skip map[string]bool, name, value, env, file string) {
	skip[name] = env != "" || file != ""
	skip[name+"_env"] = env == ""
	skip[name+"_file"] = env != "" || file == ""
}

// secretKeys are written with a warning comment when inline.
var secretKeys = map[string]bool{"password": true, "consul_token": true, "http_token": true, "patroni_password": true, "consul_register_token": true}

// writeFields writes the keys of v that differ from def, in schema order,
// except the skipped ones.
func writeFields[T any](w *strings.Builder, fields []field[T], v, def *T, skip map[string]bool) {
	for _, f := range fields {
		if skip[f.key] {
			continue
		}
		val := reflect.ValueOf(f.ptr(v)).Elem().Interface()
		if reflect.DeepEqual(val, reflect.ValueOf(f.ptr(def)).Elem().Interface()) {
			continue
		}
		if secretKeys[f.key] {
			fmt.Fprintf(w, "# %s was given inline in the source; consider %s_env or %s_file\n", f.key, f.key, f.key)
		}
		fmt.Fprintf(w, "%s = %s\n", f.key, tomlValue(val))
	}
}

// tomlValue writes a field's value as TOML.
func tomlValue(v any) string {
	switch x := v.(type) {
	case string:
		return tomlString(x)
	case PoolMode:
		return tomlString(string(x))
	case AuthType:
		return tomlString(string(x))
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	case time.Duration:
		return tomlString(formatDuration(x))
	case addrList:
		if len(x) == 1 {
			return tomlString(x[0])
		}
		if len(x) == 0 {
			return `""`
		}
		return tomlValue([]string(x))
	case []string:
		quoted := make([]string, len(x))
		for i, s := range x {
			quoted[i] = tomlString(s)
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	}
	panic(fmt.Sprintf("config: no TOML form for %T", v))
}

// formatDuration writes d the way a person would, in seconds as PgBouncer
// users know them ("3600s", "0.5s" is "500ms", "300.5s"), exactly as
// time.ParseDuration reads it back.
func formatDuration(d time.Duration) string {
	switch {
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d%time.Millisecond != 0:
		return d.String()
	case d < time.Second && d > -time.Second:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	ms := fmt.Sprintf("%03d", d%time.Second/time.Millisecond)
	return fmt.Sprintf("%s%d.%ss", sign, d/time.Second, strings.TrimRight(ms, "0"))
}

// tomlString quotes s as a TOML basic string. Invalid UTF-8, which TOML
// cannot hold, becomes U+FFFD.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		case r == utf8.RuneError:
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// oneLine keeps a comment on one line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}
