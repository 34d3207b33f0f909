package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// maxIncludeDepth bounds %include nesting, which also stops include loops.
const maxIncludeDepth = 10

// LoadPgBouncerINI reads an existing pgbouncer.ini and returns the
// equivalent validated Config, so an operator can start pauseproxy on the
// file PgBouncer used, or convert it (ToTOML).
//
// Sections: [pgbouncer] (the settings named like pauseproxy's [proxy]
// keys), [databases] (`name = host=... port=... dbname=...`, values in
// single quotes when they contain spaces, ” for a quote) and [users]
// (`name = pool_mode=... max_user_connections=...`). Lines starting with
// ";" or "#" are comments. `%include FILE` reads another file in place, as
// if its text were there (the current section carries in and out of it); a
// relative FILE is taken from the including file's directory (PgBouncer
// uses its working directory, which a converter run elsewhere cannot
// know). A relative auth_file and the TLS files are resolved the same way.
//
// PgBouncer conventions are translated: durations are seconds,
// listen_addr is a comma-separated list ("*": every address), other lists
// are separated by commas or spaces,
// host=h1,h2 becomes hosts, a database without host uses the Unix socket
// directory (PgBouncer's behaviour), and where PgBouncer's default differs
// from pauseproxy's (listen_addr unset means no TCP, pool_mode defaults to
// session) the ini's meaning is kept. The "*" database is PgBouncer's
// fallback database (see Config.DatabaseFor).
//
// PgBouncer settings that pauseproxy does not implement are not errors:
// each adds one warning to Config.Warnings ("pgbouncer.ini:
// pgbouncer.logfile: not supported by pauseproxy, ignored"); some are
// accepted silently when their value is what pauseproxy does anyway (see
// pgbouncerOnlySettings). Unknown settings and sections are errors, as
// typos would be.
func LoadPgBouncerINI(path string) (*Config, error) {
	return LoadPgBouncerINIWith(path, LoadOptions{})
}

// LoadPgBouncerINIWith is LoadPgBouncerINI with options.
func LoadPgBouncerINIWith(path string, o LoadOptions) (*Config, error) {
	r := &iniReader{src: &source{
		noSecrets:    o.NoSecrets,
		file:         path,
		proxySection: "pgbouncer",
		proxy:        map[string]any{},
		databases:    map[string]map[string]any{},
		users:        map[string]map[string]any{},
		origin:       map[string]string{},
	}}
	if err := r.readFile(path, 0); err != nil {
		return nil, &Error{Problems: []string{readProblem(path, err)}}
	}
	r.convert()
	return build(r.src)
}

// iniEntry is one `key = value` line.
type iniEntry struct {
	section, key, value string
	file                string
	line                int
}

// iniReader reads ini files into entries, then converts them into a
// source.
type iniReader struct {
	src     *source
	section string // the current section; carries across %include
	entries []iniEntry
}

// readFile reads one file's lines into r.entries. It returns an error only
// when the file cannot be read; syntax problems go to r.src.problems.
func (r *iniReader) readFile(path string, depth int) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for i, raw := range strings.Split(string(data), "\n") {
		n := i + 1
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || line[0] == ';' || line[0] == '#':
			// PgBouncer: comments start a line; ";" and "#" later in a
			// line are part of the value.
		case line[0] == '%':
			r.directive(path, n, line, depth)
		case line[0] == '[':
			name, ok := strings.CutSuffix(line[1:], "]")
			if !ok {
				r.syntax(path, n, "want [section]")
				continue
			}
			r.section = strings.ToLower(strings.TrimSpace(name))
			switch r.section {
			case "pgbouncer", "databases", "users", "peers":
			default:
				r.syntax(path, n, "unknown section [%s] (want [pgbouncer], [databases], [users] or [peers])", name)
			}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok {
				r.syntax(path, n, "want key = value")
				continue
			}
			key, value = strings.TrimSpace(key), strings.TrimSpace(value)
			if r.section == "" {
				r.syntax(path, n, "setting outside any section")
				continue
			}
			if r.section == "pgbouncer" {
				key = strings.ToLower(key)
			} else if strings.HasPrefix(key, `"`) {
				// Names with other characters than _0-9A-Za-z are
				// quoted like SQL identifiers.
				name, rest, err := authField(key)
				if err != nil || rest != "" {
					r.syntax(path, n, `bad quoted name: want "name" with "" for a double quote`)
					continue
				}
				key = name
			}
			if key == "" {
				r.syntax(path, n, "empty key")
				continue
			}
			r.entries = append(r.entries, iniEntry{section: r.section, key: key, value: value, file: path, line: n})
		}
	}
	return nil
}

func (r *iniReader) directive(path string, n int, line string, depth int) {
	name, arg, _ := strings.Cut(line, " ")
	arg = strings.TrimSpace(arg)
	if name != "%include" {
		r.syntax(path, n, "unknown directive %s (want %%include)", name)
		return
	}
	if arg == "" {
		r.syntax(path, n, "%%include needs a file name")
		return
	}
	if depth+1 > maxIncludeDepth {
		r.syntax(path, n, "%%include nested more than %d deep (an include loop?)", maxIncludeDepth)
		return
	}
	if !filepath.IsAbs(arg) {
		arg = filepath.Join(filepath.Dir(path), arg)
	}
	if err := r.readFile(arg, depth+1); err != nil {
		r.syntax(path, n, "%%include %s", readProblem(arg, err))
	}
}

func (r *iniReader) syntax(path string, n int, format string, args ...any) {
	r.src.problems = append(r.src.problems, fmt.Sprintf("%s: line %d: %s", path, n, fmt.Sprintf(format, args...)))
}

func (r *iniReader) problem(file, key, format string, args ...any) {
	r.src.problems = append(r.src.problems, fmt.Sprintf("%s: %s: %s", file, key, fmt.Sprintf(format, args...)))
}

func (r *iniReader) warn(file, key, format string, args ...any) {
	r.src.warnings = append(r.src.warnings, fmt.Sprintf("%s: %s: %s", file, key, fmt.Sprintf(format, args...)))
}

// convert turns the entries into the source's tables. A later entry for
// the same setting, database or user replaces an earlier one, as in
// PgBouncer, with a warning.
func (r *iniReader) convert() {
	seen := map[string]iniEntry{}
	for _, e := range r.entries {
		id := e.section + "\x00" + e.key
		if first, ok := seen[id]; ok {
			r.warn(e.file, iniKey(e), "set again at line %d (first at %s: line %d); the later one wins", e.line, first.file, first.line)
		} else {
			seen[id] = e
		}
		switch e.section {
		case "pgbouncer":
			r.setting(e)
		case "databases":
			r.database(e)
		case "users":
			r.user(e)
		case "peers":
			r.peer(e)
		}
	}

	// Where PgBouncer's defaults differ from pauseproxy's, keep the ini's
	// meaning.
	if _, ok := r.src.proxy["listen_addr"]; !ok {
		r.src.proxy["listen_addr"] = "" // PgBouncer: no listen_addr, no TCP
	}
	if _, ok := r.src.proxy["pool_mode"]; !ok {
		r.src.proxy["pool_mode"] = string(PoolModeSession) // PgBouncer's default
	}
	// PgBouncer reaches a database without host through the Unix socket
	// in unix_socket_dir.
	socketDir, ok := r.src.proxy["unix_socket_dir"].(string)
	if !ok {
		socketDir = defaultProxy().UnixSocketDir
	}
	for _, name := range sortedKeys(r.src.databases) {
		t := r.src.databases[name]
		_, host := t["host"]
		_, hosts := t["hosts"]
		if host || hosts {
			continue
		}
		if socketDir == "" {
			r.warn(r.src.file, keyOf([]string{"databases", name}, "host"), "not set and unix_socket_dir is empty; using 127.0.0.1")
			continue
		}
		t["host"] = socketDir
	}
}

// iniKey names an entry in messages: pgbouncer.<setting>, databases.<name>
// or users.<name>.
func iniKey(e iniEntry) string { return keyOf([]string{e.section}, e.key) }

// setting converts one [pgbouncer] setting.
func (r *iniReader) setting(e iniEntry) {
	key := iniKey(e)
	name := e.key
	switch name {
	case "verbose":
		// PgBouncer's -v: any verbosity means debug logging.
		if v := strings.TrimSpace(e.value); v != "" && v != "0" {
			name, e.value = "log_level", "debug"
		} else {
			return
		}
	case "max_packet_size":
		// PgBouncer's cap on one protocol message is max_message_size.
		name = "max_message_size"
	}
	if i := slices.IndexFunc(proxyFields, func(f field[Proxy]) bool { return f.key == name }); i >= 0 {
		var zero Proxy
		v, problem := iniValue(proxyFields[i].ptr(&zero), e.value)
		if problem != "" {
			r.problem(e.file, key, "%s", problem)
			return
		}
		r.src.proxy[name] = v
		r.src.origin[keyOf([]string{"pgbouncer"}, name)] = e.file
		return
	}
	if u, ok := pgbouncerOnlySettings[name]; ok {
		if !u.silent(e.value) {
			r.warn(e.file, key, "not supported by pauseproxy, ignored%s", u.why())
		}
		return
	}
	r.problem(e.file, key, "unknown PgBouncer setting%s", suggest(name, proxyFields))
}

// database converts one [databases] entry.
func (r *iniReader) database(e iniEntry) {
	key := iniKey(e)
	params, err := ParseINIConnString(e.value)
	if err != nil {
		r.problem(e.file, key, "%v", err)
		return
	}
	t := map[string]any{}
	r.src.origin[key] = e.file
	for _, k := range sortedKeys(params) {
		v := params[k]
		pkey := keyOf([]string{"databases", e.key}, k)
		switch k {
		case "host":
			// PgBouncer 1.17+: a comma-separated list of hosts.
			if hosts := strings.Split(v, ","); len(hosts) > 1 {
				list := make([]any, len(hosts))
				for i, h := range hosts {
					list[i] = strings.TrimSpace(h)
				}
				t["hosts"] = list
				r.src.origin[keyOf([]string{"databases", e.key}, "hosts")] = e.file
				continue
			}
		case "reserve_pool_size":
			k = "reserve_pool" // PgBouncer's newer name for it
		}
		if !slices.Contains(iniDatabaseParams, k) {
			if why, ok := pgbouncerOnlyDatabaseParams[k]; ok {
				r.warn(e.file, pkey, "not supported by pauseproxy, ignored%s", why)
				continue
			}
			r.problem(e.file, pkey, "unknown connection parameter")
			continue
		}
		i := slices.IndexFunc(databaseFields, func(f field[Database]) bool { return f.key == k })
		var zero Database
		val, problem := iniValue(databaseFields[i].ptr(&zero), v)
		if problem != "" {
			r.problem(e.file, pkey, "%s", problem)
			continue
		}
		t[k] = val
		r.src.origin[keyOf([]string{"databases", e.key}, k)] = e.file
	}
	if _, ok := t["target_session_attrs"]; !ok {
		// PgBouncer connects where the entry says and checks nothing:
		// an entry pointing at a standby must keep serving reads.
		t["target_session_attrs"] = TargetAny
	}
	r.src.databases[e.key] = t
}

// user converts one [users] entry.
func (r *iniReader) user(e iniEntry) {
	key := iniKey(e)
	params, err := ParseINIConnString(e.value)
	if err != nil {
		r.problem(e.file, key, "%v", err)
		return
	}
	t := map[string]any{}
	r.src.origin[key] = e.file
	for _, k := range sortedKeys(params) {
		pkey := keyOf([]string{"users", e.key}, k)
		if !slices.Contains(iniUserParams, k) {
			if why, ok := pgbouncerOnlyUserParams[k]; ok {
				r.warn(e.file, pkey, "not supported by pauseproxy, ignored%s", why)
				continue
			}
			r.problem(e.file, pkey, "unknown user setting")
			continue
		}
		i := slices.IndexFunc(userFields, func(f field[User]) bool { return f.key == k })
		var zero User
		val, problem := iniValue(userFields[i].ptr(&zero), params[k])
		if problem != "" {
			r.problem(e.file, pkey, "%s", problem)
			continue
		}
		t[k] = val
		r.src.origin[keyOf([]string{"users", e.key}, k)] = e.file
	}
	r.src.users[e.key] = t
}

// ParseINIConnString parses the value of a pgbouncer.ini [databases] or
// [users] entry: `key=value` pairs separated by spaces, spaces allowed
// around "=", a value in single quotes when it holds spaces (” for a
// quote inside), as PgBouncer's cstr_get_pair does. Empty values are
// errors (PgBouncer rejects them too); a key given twice keeps the later
// value. Errors give positions, never values, which may be passwords.
func ParseINIConnString(s string) (map[string]string, error) {
	out := map[string]string{}
	i := 0
	skip := func() {
		for i < len(s) && isSpace(rune(s[i])) {
			i++
		}
	}
	for {
		skip()
		if i == len(s) {
			return out, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(rune(s[i])) {
			i++
		}
		key := s[start:i]
		skip()
		if i == len(s) || s[i] != '=' || key == "" {
			return nil, fmt.Errorf("connection string: at offset %d: want key=value", start)
		}
		i++ // '='
		skip()
		var value string
		if i < len(s) && s[i] == '\'' {
			var b strings.Builder
			i++
			closed := false
			for i < len(s) {
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				b.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, fmt.Errorf("connection string: %s: missing closing single quote", key)
			}
			if i < len(s) && !isSpace(rune(s[i])) {
				return nil, fmt.Errorf("connection string: %s: want a space after the closing quote", key)
			}
			value = b.String()
		} else {
			vstart := i
			for i < len(s) && !isSpace(rune(s[i])) {
				i++
			}
			value = s[vstart:i]
		}
		if value == "" {
			return nil, fmt.Errorf("connection string: %s: empty value", key)
		}
		out[key] = value
	}
}

// formatINIConnString writes params as a connection string that
// ParseINIConnString reads back: keys sorted, every value quoted.
func formatINIConnString(params map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(params) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteString("='")
		b.WriteString(strings.ReplaceAll(params[k], "'", "''"))
		b.WriteByte('\'')
	}
	return b.String()
}
