package config

import (
	"errors"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/auth"
)

var (
	sslModes  = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
	logLevels = []string{"debug", "info", "warn", "error"}
	poolModes = []string{string(PoolModeSession), string(PoolModeTransaction)}
	authTypes = []string{string(AuthTrust), string(AuthMD5), string(AuthSCRAM), string(AuthPlain), string(AuthHBA)}
	// PgBouncer values pauseproxy does not implement get a clearer message
	// than an unknown value would.
	pgbouncerOnly = []string{"statement", "any", "cert", "pam", "ldap"}
)

// validate checks c as a whole once every key is typed and every default
// applied. Downstream code relies on these checks and repeats none.
func (b *builder) validate(c *Config) {
	b.validateProxy(&c.Proxy)
	for _, name := range sortedKeys(c.Databases) {
		b.validateDatabase(c.Databases[name])
	}
	for _, name := range sortedKeys(c.Users) {
		b.validateUser(c.Users[name])
	}
	b.validateAuth(c)
	b.validatePeering(c)
}

func (b *builder) px(k string) string { return keyOf([]string{b.src.proxySection}, k) }

func (b *builder) validateProxy(p *Proxy) {
	checkNonNegative(b, []string{b.src.proxySection}, proxyFields, p, nil)

	b.validateListenAddrs(p)
	b.port(b.px("listen_port"), p.ListenPort)
	if p.UnixSocketDir != "" {
		b.directory(b.px("unix_socket_dir"), p.UnixSocketDir)
	}
	if len(p.ListenAddrs) == 0 && p.UnixSocketDir == "" {
		b.problem(b.px("listen_addr"), "no listener: set listen_addr, unix_socket_dir or both")
	}
	if p.HTTPListen != "" {
		host, port, err := net.SplitHostPort(p.HTTPListen)
		if err != nil {
			// A host alone ("127.0.0.1", "::1", "[::1]") listens on
			// DefaultHTTPPort.
			host = strings.TrimSuffix(strings.TrimPrefix(p.HTTPListen, "["), "]")
			port = strconv.Itoa(DefaultHTTPPort)
		}
		n, perr := strconv.Atoi(port)
		if perr != nil || n < 0 || n > 65535 || (host != "" && !validHost(host)) {
			b.problem(b.px("http_listen"), `want "host:port" or "host" (port %d), like "127.0.0.1:%[1]d", got %q`, DefaultHTTPPort, p.HTTPListen)
		} else {
			p.HTTPListen = net.JoinHostPort(host, port)
		}
	}

	b.oneOf(b.px("auth_type"), string(p.AuthType), authTypes)
	for _, k := range []struct {
		key   string
		users []string
	}{{"admin_users", p.AdminUsers}, {"stats_users", p.StatsUsers}} {
		if slices.Contains(k.users, "") {
			b.problem(b.px(k.key), "empty user name")
		}
	}
	b.oneOf(b.px("pool_mode"), string(p.PoolMode), poolModes)

	b.atLeast(b.px("max_client_conn"), p.MaxClientConn, 1)
	b.atLeast(b.px("default_pool_size"), p.DefaultPoolSize, 1)
	if p.LargeMessageBudget < 0 {
		b.problem(b.px("large_message_budget"), "must be 0 (no bound) or a number of bytes, got %d", p.LargeMessageBudget)
	}
	if p.MaxMessageSize >= 0 && (p.MaxMessageSize < minMessageSize || p.MaxMessageSize > maxMessageSize) {
		b.problem(b.px("max_message_size"), "must be %d..%d bytes, got %d", minMessageSize, maxMessageSize, p.MaxMessageSize)
	}
	b.oneOf(b.px("log_level"), p.LogLevel, logLevels)
	b.oneOf(b.px("log_format"), p.LogFormat, []string{LogFormatText, LogFormatJSON})
	b.oneOf(b.px("pause_timeout_action"), p.PauseTimeoutAction, []string{PauseTimeoutResume, PauseTimeoutCancel})
	b.oneOf(b.px("on_split_brain"), p.OnSplitBrain, splitBrainActions)
	if p.ServerResetQueryAlways {
		// PgBouncer runs server_reset_query after every transaction in
		// transaction mode with this set; pauseproxy does not (yet).
		b.warn(b.px("server_reset_query_always"), "not supported: server_reset_query runs only when a session-mode client disconnects; in transaction mode a server connection is not reset between clients")
	}
	if p.ApplicationNameAddHost {
		b.warn(b.px("application_name_add_host"), "not supported yet: application_name is passed on unchanged")
	}
	if p.HTTPToken != "" && p.HTTPListen == "" {
		b.warn(b.px("http_token"), "set without http_listen: the HTTP endpoints are disabled")
	}

	for i, peer := range p.Peers {
		host, port, err := net.SplitHostPort(peer)
		switch {
		case err != nil || host == "" || !validHost(host) || !validPort(port):
			b.problem(b.px("peers"), `entry %d: want "host:port" of another pauseproxy's listener, like "10.0.0.5:6432", got %q`, i+1, peer)
		case slices.Contains(p.Peers[:i], peer):
			b.problem(b.px("peers"), "entry %d: %q is listed twice", i+1, peer)
		}
	}

	b.validateTLS("client", &p.ClientTLS)
	b.validateTLS("server", &p.ServerTLS)
	b.validateRegistration(p)
}

// validateListenAddrs checks listen_addr's entries and sets ListenAddr to
// the first. It may run again on its own result (WithSetting).
func (b *builder) validateListenAddrs(p *Proxy) {
	key := b.px("listen_addr")
	for i, a := range p.ListenAddrs {
		// "[::1]" is ::1: brackets belong to host:port forms, but are
		// easily written here too.
		if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") && net.ParseIP(a[1:len(a)-1]) != nil {
			a = a[1 : len(a)-1]
			p.ListenAddrs[i] = a
		}
		switch {
		case a == "":
			b.problem(key, "entry %d is empty", i+1)
		case a == "*":
			if len(p.ListenAddrs) > 1 {
				b.problem(key, `"*" is every address already: list nothing else with it`)
			}
		case !validHost(a):
			b.problem(key, `entry %q: want an IP address, a host name or "*", without port (see listen_port)`, a)
		case slices.Contains(p.ListenAddrs[:i], a):
			b.problem(key, "%q is listed twice", a)
		}
	}
	p.ListenAddr = ""
	if len(p.ListenAddrs) > 0 {
		p.ListenAddr = p.ListenAddrs[0]
		if p.ListenAddr == "*" {
			p.ListenAddr = "0.0.0.0"
		}
	}
}

// consulServiceName is what consul_register_service accepts: a name that
// is also a DNS label, so that <service>.service.consul resolves.
var consulServiceName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?$`)

// validateRegistration checks the consul_register_* keys and completes
// consul_register_advertise to "host:port". Without consul_register they
// are unused: one changed from its default gets a warning.
func (b *builder) validateRegistration(p *Proxy) {
	if !p.ConsulRegister {
		def := defaultProxy()
		for _, f := range proxyFields {
			k := f.key
			inherited := k == "consul_register_token" && (p.ConsulRegisterTokenEnv != "" || p.ConsulRegisterTokenFile != "")
			if !strings.HasPrefix(k, "consul_register_") || inherited ||
				reflect.DeepEqual(reflect.ValueOf(f.ptr(p)).Elem().Interface(), reflect.ValueOf(f.ptr(&def)).Elem().Interface()) {
				continue
			}
			b.warn(b.px(k), "set, but consul_register is false: not used")
		}
		return
	}
	if host, port, err := net.SplitHostPort(p.ConsulRegisterAddr); err != nil || host == "" || !validHost(host) || !validPort(port) {
		b.problem(b.px("consul_register_addr"), `want "host:port" of the Consul agent's HTTP API, like "127.0.0.1:8500", got %q`, p.ConsulRegisterAddr)
	}
	b.oneOf(b.px("consul_register_scheme"), p.ConsulRegisterScheme, []string{"http", "https"})
	b.readable(b.px("consul_register_ca_file"), p.ConsulRegisterCAFile)
	if !consulServiceName.MatchString(p.ConsulRegisterService) {
		b.problem(b.px("consul_register_service"), "want letters, digits, '-' and '_' (a Consul service name that is also a DNS label), got %q", p.ConsulRegisterService)
	}
	if slices.Contains(p.ConsulRegisterTags, "") {
		b.problem(b.px("consul_register_tags"), "empty tag")
	}

	if p.ListenAddr == "" {
		b.problem(b.px("consul_register"), "needs a TCP listener (listen_addr): the other proxies reach this one's admin console over TCP")
		return
	}
	unspecified := func(host string) bool { ip := net.ParseIP(host); return ip != nil && ip.IsUnspecified() }
	key := b.px("consul_register_advertise")
	if p.ConsulRegisterAdvertise == "" {
		host := p.ListenAddr
		if unspecified(host) {
			// Every address: the one of the agent's node (Consul's
			// own default for a service without an address).
			host = ""
		}
		p.ConsulRegisterAdvertise = joinHostPort(host, p.ListenPort)
		return
	}
	host, port, problem := splitHostPort(p.ConsulRegisterAdvertise, p.ListenPort)
	switch {
	case problem == "" && (!validHost(host) || unspecified(host)):
		problem = "want the IP address or host name the other proxies dial, not a wildcard"
	case problem == "" && strings.HasPrefix(host, "/"):
		problem = "want a TCP address, not a Unix socket directory"
	}
	if problem != "" {
		b.problem(key, "%q: %s", p.ConsulRegisterAdvertise, problem)
		return
	}
	p.ConsulRegisterAdvertise = joinHostPort(host, port)
}

// validateTLS checks one side's TLS settings. The client side serves a
// certificate, so any mode but disable needs one; verify-ca/verify-full
// there check client certificates and need a CA. The server side presents
// a client certificate only when given one, and verifies the server
// against server_tls_ca_file or, without it, the system roots.
func (b *builder) validateTLS(side string, t *TLS) {
	key := func(k string) string { return b.px(side + "_tls_" + k) }
	b.oneOf(key("sslmode"), t.SSLMode, sslModes)
	if side == "client" && t.SSLMode != "disable" && slices.Contains(sslModes, t.SSLMode) {
		for _, f := range []struct{ k, v string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
			if f.v == "" {
				b.problem(key(f.k), "required when %s is %q", key("sslmode"), t.SSLMode)
			}
		}
		if (t.SSLMode == "verify-ca" || t.SSLMode == "verify-full") && t.CAFile == "" {
			b.problem(key("ca_file"), "required when %s is %q, to verify client certificates", key("sslmode"), t.SSLMode)
		}
	}
	if side == "server" && (t.CertFile == "") != (t.KeyFile == "") {
		b.problem(key("cert_file"), "set %s and %s together", key("cert_file"), key("key_file"))
	}
	b.readable(key("cert_file"), t.CertFile)
	b.readableSecret(key("key_file"), t.KeyFile)
	b.readable(key("ca_file"), t.CAFile)
}

// splitBrainActions are the values of on_split_brain.
var splitBrainActions = []string{SplitBrainHold, SplitBrainFollow}

func (b *builder) validateDatabase(d *Database) {
	prefix := []string{"databases", d.Name}
	key := func(k string) string { return keyOf(prefix, k) }
	switch {
	case d.Name == "":
		b.problem(keyOf(prefix), "empty database name")
	case slices.Contains(reservedDatabaseNames, d.Name):
		b.problem(keyOf(prefix), "the name %q is reserved for the admin console", d.Name)
	}
	if d.ConnectQuery != "" {
		// Read (PgBouncer's name and place) but not run by the pools
		// yet: say so rather than let a file believe it is.
		b.warn(key("connect_query"), "not supported yet: new server connections do not run it")
	}
	// pool_size, min_pool_size, reserve_pool and max_db_connections
	// default to [proxy] values, which were checked there.
	set := b.dbSet[d.Name]
	inherited := func(k string) bool { return !set[k] }
	checkNonNegative(b, prefix, databaseFields, d, inherited)

	switch d.Discovery {
	case DiscoveryStatic:
		b.port(key("port"), d.Port)
		if d.Host != "" && !strings.HasPrefix(d.Host, "/") && !validHost(d.Host) {
			b.problem(key("host"), "want an IP address, a host name or a Unix socket directory, got %q", d.Host)
		}
	case DiscoveryPatroni:
		if len(d.PatroniURLs) == 0 {
			b.problem(key("patroni_urls"), `required with discovery = "patroni": the REST API of each member, like ["http://10.0.0.1:8008"]`)
		}
		for i, u := range d.PatroniURLs {
			// The URL is not quoted: it may carry REST API credentials.
			if !validHTTPURL(u) {
				b.problem(key("patroni_urls"), "entry %d: want an http:// or https:// URL with a host", i+1)
			}
		}
	case DiscoveryConsul:
		if d.ConsulService == "" {
			b.problem(key("consul_service"), `required with discovery = "consul": the Patroni scope`)
		}
		if _, port, err := net.SplitHostPort(d.ConsulAddr); err != nil || !validPort(port) {
			b.problem(key("consul_addr"), `want "host:port", like "127.0.0.1:8500", got %q`, d.ConsulAddr)
		}
		if d.ConsulNamespace == "" {
			b.problem(key("consul_namespace"), "must not be empty (Patroni's default is \"service\")")
		}
		b.oneOf(key("consul_scheme"), d.ConsulScheme, []string{"http", "https"})
		b.readable(key("consul_ca_file"), d.ConsulCAFile)
	default:
		b.problem(key("discovery"), "unknown value %q (want static, patroni or consul)", d.Discovery)
	}
	if d.Discovery == DiscoveryPatroni || d.Discovery == DiscoveryConsul {
		b.validatePatroniAPI(d, set)
	}

	if !inherited("pool_size") {
		b.atLeast(key("pool_size"), d.PoolSize, 1)
	}
	if d.PoolSize > 0 && d.MinPoolSize > d.PoolSize {
		// PgBouncer caps it silently; say so, and cap it here so that
		// nothing downstream has to.
		b.warn(key("min_pool_size"), "%d exceeds pool_size (%d); capped at %[2]d, as PgBouncer does", d.MinPoolSize, d.PoolSize)
		d.MinPoolSize = d.PoolSize
	}
	if d.PoolMode != "" {
		b.oneOf(key("pool_mode"), string(d.PoolMode), poolModes)
	}
	b.oneOf(key("on_split_brain"), d.OnSplitBrain, splitBrainActions)
	b.validateReads(d, set)
	b.positive(key("poll_interval"), d.PollInterval)
	b.positive(key("fast_poll_interval"), d.FastPollInterval)
	if d.FastPollInterval > d.PollInterval && d.PollInterval > 0 {
		b.problem(key("fast_poll_interval"), "must not exceed poll_interval (%s), got %s", d.PollInterval, d.FastPollInterval)
	}
	b.password(key("password"), d.Password)
}

// validatePatroniAPI checks the settings of Patroni's REST API: the
// credentials go in pairs (restapi.authentication has both), and so do the
// client certificate and its key.
func (b *builder) validatePatroniAPI(d *Database, set map[string]bool) {
	key := func(k string) string { return keyOf([]string{"databases", d.Name}, k) }
	password := set["patroni_password"] || set["patroni_password_env"] || set["patroni_password_file"]
	switch {
	case set["patroni_username"] && !password:
		b.problem(key("patroni_password"), "required with patroni_username (Patroni's restapi.authentication has both); or patroni_password_env / patroni_password_file")
	case password && !set["patroni_username"]:
		b.problem(key("patroni_username"), "required with patroni_password (Patroni's restapi.authentication has both)")
	case set["patroni_username"] && d.PatroniUsername == "":
		b.problem(key("patroni_username"), "must not be empty")
	}
	if (d.PatroniCertFile == "") != (d.PatroniKeyFile == "") {
		b.problem(key("patroni_cert_file"), "set %s and %s together (a client certificate and its key)", key("patroni_cert_file"), key("patroni_key_file"))
	}
	b.readable(key("patroni_ca_file"), d.PatroniCAFile)
	b.readable(key("patroni_cert_file"), d.PatroniCertFile)
	b.readableSecret(key("patroni_key_file"), d.PatroniKeyFile)
	if tls := d.PatroniCAFile != "" || d.PatroniCertFile != ""; tls && d.Discovery == DiscoveryPatroni && !slices.ContainsFunc(d.PatroniURLs, isHTTPS) {
		k := key("patroni_ca_file")
		if d.PatroniCAFile == "" {
			k = key("patroni_cert_file")
		}
		b.warn(k, "set, but no patroni_urls entry is https://: the TLS files are used only if Patroni names https API URLs")
	}
}

func isHTTPS(u string) bool { return strings.HasPrefix(strings.ToLower(u), "https://") }

func (b *builder) validateUser(u *User) {
	prefix := []string{"users", u.Name}
	if u.Name == "" {
		b.problem(keyOf(prefix), "empty user name")
	}
	checkNonNegative(b, prefix, userFields, u, nil)
	if u.PoolMode != "" {
		b.oneOf(keyOf(prefix, "pool_mode"), string(u.PoolMode), poolModes)
	}
	b.password(keyOf(prefix, "password"), u.Password)
}

// validateAuth checks that password authentication has somewhere to find
// passwords, as PgBouncer requires auth_file or auth_user for it: an
// auth_file, auth_user with auth_query (globally or for a database), or
// passwords in [users].
func (b *builder) validateAuth(c *Config) {
	p := &c.Proxy
	authUser := p.AuthUser != ""
	for _, name := range sortedKeys(c.Databases) {
		if c.Databases[name].AuthUser != "" {
			authUser = true
		}
	}
	var userPasswords []string
	for _, name := range sortedKeys(c.Users) {
		// A password from the environment or a file counts even when
		// it could not be read (reported already, or not required).
		if u := c.Users[name]; u.Password != "" || u.PasswordEnv != "" || u.PasswordFile != "" {
			userPasswords = append(userPasswords, name)
		}
	}
	if p.AuthDBName != "" {
		if _, ok := c.Databases[p.AuthDBName]; !ok {
			b.problem(b.px("auth_dbname"), "names no database: %q is not in databases", p.AuthDBName)
		}
	}
	for _, name := range sortedKeys(c.Databases) {
		if a := c.Databases[name].AuthDBName; a != "" {
			if _, ok := c.Databases[a]; !ok {
				b.problem(keyOf([]string{"databases", name}, "auth_dbname"), "names no database: %q is not in databases", a)
			}
		}
	}
	if authUser && p.AuthQuery == "" {
		b.problem(b.px("auth_query"), "must not be empty when auth_user is set")
	}
	needsPasswords := p.AuthType == AuthMD5 || p.AuthType == AuthSCRAM || p.AuthType == AuthPlain
	if p.AuthType == AuthHBA {
		needsPasswords = b.hba(p)
	} else if p.AuthHBAFile != "" {
		b.warn(b.px("auth_hba_file"), "used only with auth_type = %q, ignored", AuthHBA)
	}
	if needsPasswords && p.AuthFile == "" && !authUser && len(userPasswords) == 0 {
		b.problem(b.px("auth_type"), "%q needs passwords: set auth_file, auth_user (with auth_query), or password in [users.<name>] tables", p.AuthType)
	}

	var fromFile map[string]string
	if p.AuthFile != "" && b.readableSecret(b.px("auth_file"), p.AuthFile) {
		m, err := ParseAuthFile(p.AuthFile)
		var ce *Error
		switch {
		case errors.As(err, &ce):
			b.problems = append(b.problems, ce.Problems...)
		case err != nil:
			b.problem(b.px("auth_file"), "%v", err)
		}
		fromFile = m
	}

	// An MD5 hash cannot answer a SCRAM exchange: such users would never
	// log in (PgBouncer documents the same limit). Not fatal: PgBouncer
	// accepts the file, and the users may be unused.
	if p.AuthType == AuthSCRAM {
		for _, name := range userPasswords {
			if passwordKind(c.Users[name].Password) == passwordMD5 {
				b.warn(keyOf([]string{"users", name}, "password"), "an MD5 hash cannot be used with auth_type = %q; this user cannot log in", AuthSCRAM)
			}
		}
		var md5Users []string
		for _, name := range sortedKeys(fromFile) {
			if passwordKind(fromFile[name]) == passwordMD5 {
				md5Users = append(md5Users, name)
			}
		}
		if len(md5Users) > 0 {
			b.warn(b.px("auth_file"), "MD5 hashes cannot be used with auth_type = %q; these users cannot log in: %s", AuthSCRAM, strings.Join(md5Users, ", "))
		}
	}
}

// checkNonNegative reports every integer or duration key of a table that
// is negative: none of them has a meaning below zero. Keys for which skip
// returns true are not checked.
func checkNonNegative[T any](b *builder, prefix []string, fields []field[T], v *T, skip func(string) bool) {
	for _, f := range fields {
		if skip != nil && skip(f.key) {
			continue
		}
		switch p := f.ptr(v).(type) {
		case *int:
			if *p < 0 {
				b.problem(keyOf(prefix, f.key), "must not be negative, got %d", *p)
			}
		case *time.Duration:
			if *p < 0 {
				b.problem(keyOf(prefix, f.key), "must not be negative, got %s", *p)
			}
		}
	}
}

// password checks the form of a stored password: one that claims to be a
// SCRAM secret must be one.
func (b *builder) password(key, pw string) {
	if strings.HasPrefix(pw, scramPrefix) && passwordKind(pw) != passwordSCRAM {
		b.problem(key, "malformed SCRAM secret (want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)")
	}
}

// port checks a TCP port number (negative ones are reported already).
func (b *builder) port(key string, n int) {
	if n == 0 || n > 65535 {
		b.problem(key, "must be 1..65535, got %d", n)
	}
}

// atLeast checks a minimum above zero (negative values are reported
// already).
func (b *builder) atLeast(key string, n, least int) {
	if n >= 0 && n < least {
		b.problem(key, "must be at least %d, got %d", least, n)
	}
}

// positive checks a duration that cannot be zero.
func (b *builder) positive(key string, d time.Duration) {
	if d == 0 {
		b.problem(key, "must be more than 0")
	}
}

// oneOf checks an enumerated value.
func (b *builder) oneOf(key, v string, allowed []string) {
	if slices.Contains(allowed, v) {
		return
	}
	want := orList(allowed)
	if slices.Contains(pgbouncerOnly, v) {
		b.problem(key, "%q is not supported by pauseproxy (want %s)", v, want)
		return
	}
	b.problem(key, "unknown value %q (want %s)", v, want)
}

// orList words a choice for messages: "a", "a or b", "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// quotedOr is orList of the items quoted: "a" or "b".
func quotedOr(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return orList(q)
}

// readable checks that path, when set, is a regular file the proxy can
// open. It reports whether it is.
func (b *builder) readable(key, path string) bool {
	return b.readableAs(key, path, b.problem)
}

// readableSecret is readable for a file that holds secrets (auth_file, a
// private key): with LoadOptions.NoSecrets one that cannot be read is a
// warning.
func (b *builder) readableSecret(key, path string) bool {
	return b.readableAs(key, path, b.secretMissing)
}

func (b *builder) readableAs(key, path string, report func(key, format string, args ...any)) bool {
	if path == "" {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		report(key, "%s", readProblem(path, err))
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		report(key, "%s: not a regular file", path)
		return false
	}
	return true
}

// directory checks that path is an existing directory given absolutely.
func (b *builder) directory(key, path string) {
	if !strings.HasPrefix(path, "/") {
		b.problem(key, "want an absolute path, got %q", path)
		return
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		b.problem(key, "%s", readProblem(path, err))
	case !st.IsDir():
		b.problem(key, "%s: not a directory", path)
	}
}

// validHost reports whether s is an IP address or a plausible host name.
func validHost(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

func validHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Hostname() != ""
}

// hba loads auth_hba_file into p.HBA for auth_type = hba, reporting each
// line it cannot read, and says whether a rule asks for a password.
func (b *builder) hba(p *Proxy) (needsPasswords bool) {
	if p.AuthHBAFile == "" {
		b.problem(b.px("auth_hba_file"), "must be set when auth_type = %q", AuthHBA)
		return false
	}
	if !b.readable(b.px("auth_hba_file"), p.AuthHBAFile) {
		return false
	}
	h, err := auth.LoadHBA(p.AuthHBAFile)
	var he *auth.HBAError
	switch {
	case errors.As(err, &he):
		for _, problem := range he.Problems {
			b.problem(b.px("auth_hba_file"), "%s", problem)
		}
		return false
	case err != nil:
		b.problem(b.px("auth_hba_file"), "%v", err)
		return false
	}
	p.HBA = h
	for _, r := range h.Rules {
		switch r.Method {
		case auth.MethodMD5, auth.MethodSCRAM, auth.MethodPlain:
			needsPasswords = true
		}
	}
	return needsPasswords
}
