package config

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/BurntSushi/toml"
)

// This file is what Load and LoadPgBouncerINI share: a source (the tables
// as read) becomes a Config by typing every key through the schema
// (keys.go), applying defaults, resolving paths and secrets, and
// validating (validate.go).

// source is a configuration as read, before typing: the TOML tables, or
// what the ini reader made of a pgbouncer.ini. Values are TOML-typed
// (string, int64, float64, bool, []any) or time.Duration.
type source struct {
	file string // the file named by the caller
	// proxySection names the proxy table in messages: "proxy" in TOML,
	// "pgbouncer" in an ini.
	proxySection string
	proxy        map[string]any
	databases    map[string]map[string]any
	users        map[string]map[string]any
	peers        map[string]map[string]any // [peers.<id>] (peers.go)
	// origin is the file each key came from when it is not file (an ini
	// %include), by key path as in messages.
	origin map[string]string
	// problems and warnings found while reading.
	problems []string
	warnings []string
	// noSecrets is LoadOptions.NoSecrets.
	noSecrets bool
}

// builder turns a source into a validated Config.
type builder struct {
	src      *source
	problems []string
	warnings []string
	// dbSet holds, per database, the keys its table set: a value it
	// inherited from [proxy] is reported there, not again per database.
	dbSet map[string]map[string]bool
}

// build types, completes and validates src.
func build(src *source) (*Config, error) {
	b := &builder{src: src, problems: src.problems, warnings: src.warnings, dbSet: map[string]map[string]bool{}}
	c := &Config{
		File:      src.file,
		Proxy:     defaultProxy(),
		Databases: map[string]*Database{},
		Users:     map[string]*User{},
	}
	proxySet := decodeTable(b, []string{src.proxySection}, src.proxy, proxyFields, &c.Proxy)
	b.secret([]string{src.proxySection}, proxySet, "http_token", &c.Proxy.HTTPToken, &c.Proxy.HTTPTokenEnv, &c.Proxy.HTTPTokenFile)
	b.secret([]string{src.proxySection}, proxySet, "consul_register_token", &c.Proxy.ConsulRegisterToken, &c.Proxy.ConsulRegisterTokenEnv, &c.Proxy.ConsulRegisterTokenFile)
	for _, name := range sortedKeys(src.databases) {
		c.Databases[name] = b.database(&c.Proxy, name, src.databases[name])
	}
	for _, name := range sortedKeys(src.users) {
		c.Users[name] = b.user(name, src.users[name])
	}
	c.CancelPeers = b.peers(src.peers)
	b.validate(c)
	if len(b.problems) > 0 {
		return nil, &Error{Problems: b.problems}
	}
	c.Warnings = b.warnings
	return c, nil
}

func (b *builder) database(p *Proxy, name string, t map[string]any) *Database {
	prefix := []string{"databases", name}
	discovery := DiscoveryStatic
	if s, ok := t["discovery"].(string); ok {
		discovery = s
	}
	d := defaultDatabase(p, name, discovery)
	set := decodeTable(b, prefix, t, databaseFields, &d)
	b.dbSet[name] = set
	d.Name = name

	if known := discovery == DiscoveryStatic || discovery == DiscoveryPatroni || discovery == DiscoveryConsul; known {
		for _, k := range sortedKeys(set) {
			if only, ok := discoveryOnlyKeys[k]; ok && !slices.Contains(only, discovery) {
				b.problem(keyOf(prefix, k), "only used with discovery = %s (this database uses %q)", quotedOr(only), discovery)
			}
		}
	}
	switch {
	case discovery != DiscoveryStatic:
		d.Host, d.Hosts = "", nil
	case set["hosts"]:
		if set["host"] {
			b.problem(keyOf(prefix, "hosts"), "set host or hosts, not both")
		}
		d.Hosts, d.Host, d.Port = b.normalizeHosts(keyOf(prefix, "hosts"), d.Hosts, d.Port)
	default:
		d.Hosts = []string{joinHostPort(d.Host, d.Port)}
	}

	if d.ReadOnly && !set["target_session_attrs"] {
		// read_only = true predates target_session_attrs: "a replica on
		// purpose, no writability check". A static target is used as
		// it is (any); with discovery, a replica when one is usable.
		d.TargetSessionAttrs = TargetAny
		if discovery != DiscoveryStatic {
			d.TargetSessionAttrs = TargetPreferStandby
		}
	}

	b.secret(prefix, set, "password", &d.Password, &d.PasswordEnv, &d.PasswordFile)
	b.secret(prefix, set, "consul_token", &d.ConsulToken, &d.ConsulTokenEnv, &d.ConsulTokenFile)
	b.secret(prefix, set, "patroni_password", &d.PatroniPassword, &d.PatroniPasswordEnv, &d.PatroniPasswordFile)
	return &d
}

func (b *builder) user(name string, t map[string]any) *User {
	prefix := []string{"users", name}
	u := User{Name: name}
	set := decodeTable(b, prefix, t, userFields, &u)
	b.secret(prefix, set, "password", &u.Password, &u.PasswordEnv, &u.PasswordFile)
	return &u
}

// decodeTable assigns the keys of t to dst through fields, reporting
// unknown keys and wrong types, and resolving relative paths. It returns
// the keys that were set.
func decodeTable[T any](b *builder, prefix []string, t map[string]any, fields []field[T], dst *T) map[string]bool {
	set := map[string]bool{}
	for _, k := range sortedKeys(t) {
		key := keyOf(prefix, k)
		i := slices.IndexFunc(fields, func(f field[T]) bool { return f.key == k })
		if i < 0 {
			b.problem(key, "unknown key%s", suggest(k, fields))
			continue
		}
		ptr := fields[i].ptr(dst)
		if p := assign(ptr, t[k]); p != "" {
			b.problem(key, "%s", p)
			continue
		}
		set[k] = true
		if s, ok := ptr.(*string); ok && pathKeys[k] && *s != "" && !filepath.IsAbs(*s) {
			*s = filepath.Join(b.dirOf(key), *s)
		}
	}
	return set
}

// suggest returns ` (did you mean "x"?)` for the known key nearest to k,
// when one is close enough to be a typo.
func suggest[T any](k string, fields []field[T]) string {
	best, bestDist := "", 3
	for _, f := range fields {
		if d := editDistance(k, f.key); d < bestDist {
			best, bestDist = f.key, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// keyOf is the dotted key path of k under prefix, quoted where TOML needs
// it (databases."*".host).
func keyOf(prefix []string, k ...string) string {
	return toml.Key(append(slices.Clone(prefix), k...)).String()
}

// fileOf is the file key came from.
func (b *builder) fileOf(key string) string {
	if f, ok := b.src.origin[key]; ok {
		return f
	}
	return b.src.file
}

// dirOf is the absolute directory of the file key came from, against
// which relative paths are resolved.
func (b *builder) dirOf(key string) string {
	dir := filepath.Dir(b.fileOf(key))
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// problem records a problem with key ("" for the file as a whole).
func (b *builder) problem(key, format string, args ...any) {
	b.problems = append(b.problems, b.message(key, format, args...))
}

// secretMissing records that a secret named by key cannot be had: a
// problem, or with LoadOptions.NoSecrets a warning.
func (b *builder) secretMissing(key, format string, args ...any) {
	if b.src.noSecrets {
		b.warn(key, format+" (not required: secrets are not checked)", args...)
		return
	}
	b.problem(key, format, args...)
}

// warn records a non-fatal remark about key.
func (b *builder) warn(key, format string, args ...any) {
	b.warnings = append(b.warnings, b.message(key, format, args...))
}

func (b *builder) message(key, format string, args ...any) string {
	msg := fmt.Sprintf(format, args...)
	if key == "" {
		return b.src.file + ": " + msg
	}
	return b.fileOf(key) + ": " + key + ": " + msg
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
