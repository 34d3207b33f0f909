package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Error is a configuration that cannot be used. Problems has one line per
// problem, each starting with the file name and, where there is one, the
// key ("pauseproxy.toml: proxy.listen_port: must be 1..65535, got 70000").
// No problem quotes a secret.
type Error struct {
	Problems []string
}

func (e *Error) Error() string { return strings.Join(e.Problems, "\n") }

// Load reads and validates a pauseproxy TOML file: a [proxy] table, one
// [databases.<name>] table per database and optional [users.<name>]
// tables; config.example.toml documents every key. Keys left out take
// their defaults (see types.go). Every problem is reported at once in an
// *Error. The result's Warnings hold remarks that do not stop the proxy.
func Load(path string) (*Config, error) {
	return LoadWith(path, LoadOptions{})
}

// LoadOptions change what Load and LoadPgBouncerINI require of the world
// outside the file. The zero value is what serving needs.
type LoadOptions struct {
	// NoSecrets does not require the secrets a file names but does not
	// hold: the environment variables of *_env keys, the files of
	// *_file secret keys (password_file, http_token_file, ...), auth_file
	// and the TLS private keys (*_key_file). One that is missing is a
	// warning instead of a problem, and its value stays empty. Everything
	// else is checked as usual. For `pauseproxy check-config
	// --no-secrets` in a pipeline that has none of them; such a Config
	// must not be served.
	NoSecrets bool
}

// LoadWith is Load with options.
func LoadWith(path string, o LoadOptions) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Problems: []string{readProblem(path, err)}}
	}
	// The three tables are decoded as untyped values and checked against
	// the schema by build, so that every wrong key or type is reported,
	// not just the first (the decoder stops at one, and silently drops a
	// value that is not a table where a map is expected).
	var doc struct {
		Proxy     any `toml:"proxy"`
		Databases any `toml:"databases"`
		Users     any `toml:"users"`
		Peers     any `toml:"peers"`
	}
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		return nil, &Error{Problems: []string{tomlProblem(path, err)}}
	}
	src := &source{file: path, proxySection: "proxy", noSecrets: o.NoSecrets}
	// What is undecoded outside the three tables is unknown.
	var unknown []string
	for _, k := range md.Undecoded() {
		if k[0] == "proxy" || k[0] == "databases" || k[0] == "users" || k[0] == "peers" {
			continue
		}
		if top := k[:1].String(); !slices.Contains(unknown, top) {
			unknown = append(unknown, top)
			src.problems = append(src.problems, fmt.Sprintf("%s: %s: unknown key (want [proxy], [databases.<name>], [users.<name>] or [peers.<id>] tables)", path, top))
		}
	}
	src.proxy = src.table(doc.Proxy, "proxy")
	src.databases = src.tables(doc.Databases, "databases")
	src.users = src.tables(doc.Users, "users")
	src.peers = src.tables(doc.Peers, "peers")
	return build(src)
}

// table checks that v, the value of key, is a table.
func (src *source) table(v any, key ...string) map[string]any {
	if v == nil {
		return nil
	}
	t, ok := v.(map[string]any)
	if !ok {
		src.problems = append(src.problems, fmt.Sprintf("%s: %s: want a table ([%[2]s]), got %s", src.file, toml.Key(key), describe(v)))
	}
	return t
}

// tables checks that v, the value of key, is a table of tables.
func (src *source) tables(v any, key string) map[string]map[string]any {
	t := src.table(v, key)
	out := make(map[string]map[string]any, len(t))
	for _, name := range sortedKeys(t) {
		if sub := src.table(t[name], key, name); sub != nil {
			out[name] = sub
		}
	}
	return out
}

// readProblem words a failure to read a file.
func readProblem(path string, err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Sprintf("%s: cannot read: %v", path, err)
}

// tomlProblem words a TOML syntax or shape error, with its line.
func tomlProblem(path string, err error) string {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s: line %d: %s", path, pe.Position.Line, pe.Message)
	}
	return fmt.Sprintf("%s: %s", path, strings.TrimPrefix(err.Error(), "toml: "))
}
