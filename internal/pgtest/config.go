package pgtest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// confFile is written by pgtest and included at the end of postgresql.conf,
// so that its settings win over initdb's and can be rewritten (for a new
// port) without touching the rest. ALTER SYSTEM still wins over it, since
// postgresql.auto.conf is read last.
const confFile = "pgtest.conf"

// managedSettings describe where the cluster listens; Cluster's fields would
// be wrong if Options.Conf changed them.
var managedSettings = []string{"port", "listen_addresses", "unix_socket_directories"}

// authMethod validates Options.AuthMethod.
func authMethod(m string) (string, error) {
	switch m {
	case "":
		return "trust", nil
	case "trust", "md5", "scram-sha-256":
		return m, nil
	}
	return "", fmt.Errorf("pgtest: AuthMethod %q: want trust, md5 or scram-sha-256", m)
}

// checkConf validates Options.Conf, before Start spends time on initdb.
func checkConf(conf map[string]string) error {
	for k, v := range conf {
		if k == "" || strings.ContainsAny(k, " \t\r\n=#'") {
			return fmt.Errorf("pgtest: Conf key %q is not a setting name", k)
		}
		if slices.Contains(managedSettings, strings.ToLower(k)) {
			return fmt.Errorf("pgtest: Conf key %q is managed by pgtest", k)
		}
		if strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("pgtest: Conf value for %q contains a newline", k)
		}
	}
	return nil
}

// settings returns the postgresql.conf settings for the cluster: fast,
// unsafe defaults for throwaway data, then opts.Conf over them.
func (c *Cluster) settings() map[string]string {
	s := map[string]string{
		"max_connections": "300",
		// Durability buys nothing for data deleted after the test, and
		// fsync dominates the run time of small transactions.
		"fsync":              "off",
		"synchronous_commit": "off",
		"full_page_writes":   "off",
		// Stored password hashes follow the pg_hba method, so that an md5
		// cluster really exercises MD5 authentication: with a SCRAM verifier
		// stored, PostgreSQL answers an md5 line with SCRAM ("Password
		// Authentication", PostgreSQL 15 docs section 21.5).
		"password_encryption": "scram-sha-256",
		"log_line_prefix":     "%m [%p] %q%u@%d ",
		"lc_messages":         "C",
	}
	if c.opts.AuthMethod == "md5" {
		s["password_encryption"] = "md5"
	}
	if c.opts.SSL {
		s["ssl"] = "on"
		s["ssl_cert_file"] = c.CertFile
		s["ssl_key_file"] = c.KeyFile
	}
	for k, v := range c.opts.Conf {
		s[k] = v
	}
	s["listen_addresses"] = c.Host
	s["port"] = strconv.Itoa(c.Port)
	s["unix_socket_directories"] = c.SocketDir
	return s
}

// writeConf writes pgtest.conf for the current port and makes sure
// postgresql.conf includes it.
func (c *Cluster) writeConf() error {
	s := c.settings()
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString("# Written by pauseproxy internal/pgtest.\n")
	for _, k := range keys {
		// Every value is quoted: PostgreSQL accepts quoted numbers and
		// booleans, and quoting keeps strings like log_line_prefix intact
		// ("Parameter Interaction via the Configuration File", 20.1.2).
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(s[k], "'", "''"))
	}
	if err := writeFile(filepath.Join(c.Dir, confFile), []byte(b.String()), 0o600); err != nil {
		return err
	}

	mainConf := filepath.Join(c.Dir, "postgresql.conf")
	cur, err := os.ReadFile(mainConf)
	if err != nil {
		return fmt.Errorf("pgtest: read %s: %w", mainConf, err)
	}
	include := "include '" + confFile + "'\n"
	if strings.Contains(string(cur), include) {
		return nil
	}
	f, err := os.OpenFile(mainConf, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pgtest: open %s: %w", mainConf, err)
	}
	_, err = f.WriteString("\n" + include)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgtest: append include to %s: %w", mainConf, err)
	}
	return nil
}

// writeHBA replaces initdb's pg_hba.conf: unix-socket connections (used by
// Exec and the readiness check) are trusted, TCP connections from 127.0.0.1,
// with or without TLS, use the chosen method.
func (c *Cluster) writeHBA(method string) error {
	hba := fmt.Sprintf(`# Written by pauseproxy internal/pgtest.
# TYPE  DATABASE     USER  ADDRESS       METHOD
local   all          all                 trust
local   replication  all                 trust
host    all          all   127.0.0.1/32  %[1]s
host    replication  all   127.0.0.1/32  %[1]s
`, method)
	return writeFile(filepath.Join(c.Dir, "pg_hba.conf"), []byte(hba), 0o600)
}

// writeFile writes a file in the data directory, owned by the user the
// server runs as.
func writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("pgtest: write %s: %w", path, err)
	}
	if err := os.Chmod(path, perm); err != nil {
		return fmt.Errorf("pgtest: chmod %s: %w", path, err)
	}
	return ChownPostgres(path)
}
