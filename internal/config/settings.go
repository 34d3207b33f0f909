package config

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// This file serves the admin console: SHOW CONFIG lists the [proxy]
// settings in force, and SET changes one of them at run time. Both speak
// PgBouncer's text forms (seconds for durations, 0/1 for booleans,
// comma-separated lists), so tools written for PgBouncer's console read and
// write them unchanged.

// Setting is one [proxy] key as SHOW CONFIG lists it.
type Setting struct {
	Key     string
	Value   string
	Default string
	// Changeable is false for the keys SET refuses: the listeners (a
	// restart is needed, as in PgBouncer) and the HTTP token.
	Changeable bool
}

// fixedKeys cannot be changed with SET. The listeners are bound once (as
// in PgBouncer); the HTTP token guards the HTTP pause endpoints, so a
// console user must not be able to replace it.
var fixedKeys = map[string]bool{
	"listen_addr":     true,
	"listen_port":     true,
	"unix_socket_dir": true,
	"http_listen":     true,
	// The logger is built once, at start.
	"log_format":      true,
	"http_token":      true,
	"http_token_env":  true,
	"http_token_file": true,
	// The Consul token and where it comes from, like the HTTP token.
	"consul_register_token":      true,
	"consul_register_token_env":  true,
	"consul_register_token_file": true,
}

// inheritedKeys are [proxy] keys whose value databases take as their
// default when they do not set their own.
var inheritedKeys = map[string]func(*Database) *int{
	"default_pool_size":  func(d *Database) *int { return &d.PoolSize },
	"min_pool_size":      func(d *Database) *int { return &d.MinPoolSize },
	"reserve_pool_size":  func(d *Database) *int { return &d.ReservePool },
	"max_db_connections": func(d *Database) *int { return &d.MaxDBConns },
}

// Settings returns every [proxy] key of c in schema order, with its value
// and default in PgBouncer's text form. A secret given inline shows as
// "********".
func Settings(c *Config) []Setting {
	def := defaultProxy()
	out := make([]Setting, 0, len(proxyFields))
	for _, f := range proxyFields {
		v := settingText(f.ptr(&c.Proxy))
		if secretKeys[f.key] && v != "" {
			v = "********"
		}
		out = append(out, Setting{
			Key:        f.key,
			Value:      v,
			Default:    settingText(f.ptr(&def)),
			Changeable: !fixedKeys[f.key],
		})
	}
	return out
}

// settingText writes a field's value as PgBouncer's SHOW CONFIG does.
func settingText(ptr any) string {
	switch v := reflect.ValueOf(ptr).Elem().Interface().(type) {
	case string:
		return v
	case PoolMode:
		return string(v)
	case AuthType:
		return string(v)
	case int:
		return strconv.Itoa(v)
	case bool:
		if v {
			return "1"
		}
		return "0"
	case time.Duration:
		return strconv.FormatFloat(v.Seconds(), 'f', -1, 64)
	case []string:
		return strings.Join(v, ",")
	case addrList:
		return strings.Join(v, ",")
	}
	panic(fmt.Sprintf("config: no text form for %T", ptr))
}

// WithSetting returns a copy of c with the [proxy] key set from value,
// given as in a pgbouncer.ini (seconds or a Go duration, 0/1, a
// comma-separated list), and validated as Load validates a file. c itself
// is not modified. Databases that had inherited the old value of
// default_pool_size, min_pool_size, reserve_pool_size or
// max_db_connections (their value equals it) follow the new one, as
// PgBouncer's databases do.
//
// The result lives only in memory: a later reload from the file replaces
// it, as in PgBouncer.
func WithSetting(c *Config, key, value string) (*Config, error) {
	key = strings.ToLower(strings.TrimSpace(key))
	prefix := []string{"proxy"}
	b := &builder{src: &source{file: c.File, proxySection: "proxy"}, dbSet: map[string]map[string]bool{}}
	var f *field[Proxy]
	for i := range proxyFields {
		if proxyFields[i].key == key {
			f = &proxyFields[i]
		}
	}
	switch {
	case f == nil:
		b.problem(keyOf(prefix, key), "unknown key%s", suggest(key, proxyFields))
		return nil, &Error{Problems: b.problems}
	case fixedKeys[key]:
		b.problem(keyOf(prefix, key), "cannot be changed at run time; change the configuration file and restart")
		return nil, &Error{Problems: b.problems}
	}

	nc := *c
	nc.Warnings = nil
	ptr := f.ptr(&nc.Proxy)
	v, problem := iniValue(ptr, value)
	if problem == "" {
		problem = assign(ptr, v)
	}
	if problem != "" {
		b.problem(keyOf(prefix, key), "%s", problem)
		return nil, &Error{Problems: b.problems}
	}
	if s, ok := ptr.(*string); ok && pathKeys[key] && *s != "" && !filepath.IsAbs(*s) {
		*s = filepath.Join(b.dirOf(keyOf(prefix, key)), *s)
	}

	// Validation may adjust a database (min_pool_size is capped), and
	// inherited values change: work on copies.
	nc.Databases = make(map[string]*Database, len(c.Databases))
	for name, d := range c.Databases {
		cp := *d
		if get, ok := inheritedKeys[key]; ok {
			if old := *get(&cp); old == *inheritedValue(&c.Proxy, key) {
				*get(&cp) = *inheritedValue(&nc.Proxy, key)
			}
		}
		nc.Databases[name] = &cp
	}
	b.validate(&nc)
	if len(b.problems) > 0 {
		return nil, &Error{Problems: b.problems}
	}
	nc.Warnings = b.warnings
	return &nc, nil
}

// inheritedValue is the [proxy] field databases inherit for key.
func inheritedValue(p *Proxy, key string) *int {
	switch key {
	case "default_pool_size":
		return &p.DefaultPoolSize
	case "min_pool_size":
		return &p.MinPoolSize
	case "reserve_pool_size":
		return &p.ReservePoolSize
	default: // max_db_connections
		return &p.MaxDBConnections
	}
}
