package config

import "time"

// This file is the schema: every key of every table, in the order ToTOML
// writes them, and the defaults. Decoding (TOML and ini), ToTOML and the
// test that checks config.example.toml documents every key all read these
// tables, so a new setting is added here and in types.go only.

// DefaultAuthQuery is PgBouncer's historical auth_query default. It needs a
// superuser; PgBouncer's documentation recommends a SECURITY DEFINER
// function instead, which auth_query can name.
const DefaultAuthQuery = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1"

// DefaultHTTPPort is the port of http_listen when it names a host alone.
// Prometheus's exporters take ports in 9100-9999 by convention; 9930 is
// clear of the two a PgBouncer host runs: pgbouncer_exporter (9127) and
// postgres_exporter (9187), so pauseproxy can replace PgBouncer beside
// them, or run next to PgBouncer and its exporter during a migration.
const DefaultHTTPPort = 9930

// DefaultMaxMessageSize is the default max_message_size: 64 MiB. It is a
// cap so that no client (or server) can make the proxy allocate unbounded
// memory by announcing a huge message length. PostgreSQL itself limits most
// messages to 1 GB (MaxAllocSize); 64 MiB is far above any sane query or
// row while keeping a hostile length harmless.
const DefaultMaxMessageSize = 64 << 20

// DefaultLargeMessageBudget is the default large_message_budget: 256 MiB
// for all client messages held whole at once (those that cannot be
// streamed, such as a Parse, and those between the client buffer and the
// streaming threshold).
const DefaultLargeMessageBudget = 256 << 20

// Bounds of max_message_size. The minimum is PostgreSQL's
// MAX_STARTUP_PACKET_LENGTH (src/include/libpq/pqcomm.h), so a legal
// startup packet always fits; the maximum is what a message's int32 length
// field can say.
const (
	minMessageSize = 10000
	maxMessageSize = 1<<31 - 1
)

// reservedDatabaseNames are the admin console's names: a client connecting
// to one of them talks to the proxy itself (PgBouncer reserves "pgbouncer").
var reservedDatabaseNames = []string{"pgbouncer", "pauseproxy"}

// field is one key of a table: its name and a pointer to the typed field it
// fills. ptr returns one of *string, *int, *bool, *time.Duration,
// *[]string, *addrList, *PoolMode or *AuthType; the pointer's type is the
// key's type.
type field[T any] struct {
	key string
	ptr func(*T) any
}

// proxyFields are the keys of [proxy] (PgBouncer's [pgbouncer] section).
var proxyFields = []field[Proxy]{
	{"listen_addr", func(p *Proxy) any { return (*addrList)(&p.ListenAddrs) }},
	{"listen_port", func(p *Proxy) any { return &p.ListenPort }},
	{"unix_socket_dir", func(p *Proxy) any { return &p.UnixSocketDir }},
	{"http_listen", func(p *Proxy) any { return &p.HTTPListen }},
	{"auth_type", func(p *Proxy) any { return &p.AuthType }},
	{"auth_file", func(p *Proxy) any { return &p.AuthFile }},
	{"auth_hba_file", func(p *Proxy) any { return &p.AuthHBAFile }},
	{"auth_user", func(p *Proxy) any { return &p.AuthUser }},
	{"auth_dbname", func(p *Proxy) any { return &p.AuthDBName }},
	{"auth_query", func(p *Proxy) any { return &p.AuthQuery }},
	{"admin_users", func(p *Proxy) any { return &p.AdminUsers }},
	{"stats_users", func(p *Proxy) any { return &p.StatsUsers }},
	{"pool_mode", func(p *Proxy) any { return &p.PoolMode }},
	{"max_client_conn", func(p *Proxy) any { return &p.MaxClientConn }},
	{"default_pool_size", func(p *Proxy) any { return &p.DefaultPoolSize }},
	{"min_pool_size", func(p *Proxy) any { return &p.MinPoolSize }},
	{"reserve_pool_size", func(p *Proxy) any { return &p.ReservePoolSize }},
	{"reserve_pool_timeout", func(p *Proxy) any { return &p.ReservePoolTimeout }},
	{"max_db_connections", func(p *Proxy) any { return &p.MaxDBConnections }},
	{"max_user_connections", func(p *Proxy) any { return &p.MaxUserConnections }},
	{"server_lifetime", func(p *Proxy) any { return &p.ServerLifetime }},
	{"server_idle_timeout", func(p *Proxy) any { return &p.ServerIdleTimeout }},
	{"server_connect_timeout", func(p *Proxy) any { return &p.ServerConnectTimeout }},
	{"server_login_retry", func(p *Proxy) any { return &p.ServerLoginRetry }},
	{"query_wait_timeout", func(p *Proxy) any { return &p.QueryWaitTimeout }},
	{"query_timeout", func(p *Proxy) any { return &p.QueryTimeout }},
	{"client_login_timeout", func(p *Proxy) any { return &p.ClientLoginTimeout }},
	{"client_idle_timeout", func(p *Proxy) any { return &p.ClientIdleTimeout }},
	{"idle_transaction_timeout", func(p *Proxy) any { return &p.IdleTransactionTimeout }},
	{"transaction_timeout", func(p *Proxy) any { return &p.TransactionTimeout }},
	{"server_reset_query", func(p *Proxy) any { return &p.ServerResetQuery }},
	{"server_reset_query_always", func(p *Proxy) any { return &p.ServerResetQueryAlways }},
	{"ignore_startup_parameters", func(p *Proxy) any { return &p.IgnoreStartupParams }},
	{"max_prepared_statements", func(p *Proxy) any { return &p.MaxPreparedStatements }},
	{"max_message_size", func(p *Proxy) any { return &p.MaxMessageSize }},
	{"large_message_budget", func(p *Proxy) any { return &p.LargeMessageBudget }},
	{"application_name_add_host", func(p *Proxy) any { return &p.ApplicationNameAddHost }},
	{"client_tls_sslmode", func(p *Proxy) any { return &p.ClientTLS.SSLMode }},
	{"client_tls_cert_file", func(p *Proxy) any { return &p.ClientTLS.CertFile }},
	{"client_tls_key_file", func(p *Proxy) any { return &p.ClientTLS.KeyFile }},
	{"client_tls_ca_file", func(p *Proxy) any { return &p.ClientTLS.CAFile }},
	{"server_tls_sslmode", func(p *Proxy) any { return &p.ServerTLS.SSLMode }},
	{"server_tls_cert_file", func(p *Proxy) any { return &p.ServerTLS.CertFile }},
	{"server_tls_key_file", func(p *Proxy) any { return &p.ServerTLS.KeyFile }},
	{"server_tls_ca_file", func(p *Proxy) any { return &p.ServerTLS.CAFile }},
	{"hold_timeout", func(p *Proxy) any { return &p.HoldTimeout }},
	{"drain_timeout", func(p *Proxy) any { return &p.DrainTimeout }},
	{"pause_timeout_action", func(p *Proxy) any { return &p.PauseTimeoutAction }},
	{"on_split_brain", func(p *Proxy) any { return &p.OnSplitBrain }},
	{"shutdown_timeout", func(p *Proxy) any { return &p.ShutdownTimeout }},
	{"log_level", func(p *Proxy) any { return &p.LogLevel }},
	{"log_format", func(p *Proxy) any { return &p.LogFormat }},
	{"log_connections", func(p *Proxy) any { return &p.LogConnections }},
	{"log_disconnections", func(p *Proxy) any { return &p.LogDisconnections }},
	{"allow_root", func(p *Proxy) any { return &p.AllowRoot }},
	{"http_token", func(p *Proxy) any { return &p.HTTPToken }},
	{"http_token_env", func(p *Proxy) any { return &p.HTTPTokenEnv }},
	{"http_token_file", func(p *Proxy) any { return &p.HTTPTokenFile }},
	{"peers", func(p *Proxy) any { return &p.Peers }},
	{"peer_id", func(p *Proxy) any { return &p.PeerID }},
	{"consul_register", func(p *Proxy) any { return &p.ConsulRegister }},
	{"consul_register_addr", func(p *Proxy) any { return &p.ConsulRegisterAddr }},
	{"consul_register_scheme", func(p *Proxy) any { return &p.ConsulRegisterScheme }},
	{"consul_register_ca_file", func(p *Proxy) any { return &p.ConsulRegisterCAFile }},
	{"consul_register_token", func(p *Proxy) any { return &p.ConsulRegisterToken }},
	{"consul_register_token_env", func(p *Proxy) any { return &p.ConsulRegisterTokenEnv }},
	{"consul_register_token_file", func(p *Proxy) any { return &p.ConsulRegisterTokenFile }},
	{"consul_register_service", func(p *Proxy) any { return &p.ConsulRegisterService }},
	{"consul_register_advertise", func(p *Proxy) any { return &p.ConsulRegisterAdvertise }},
	{"consul_register_tags", func(p *Proxy) any { return &p.ConsulRegisterTags }},
}

// databaseFields are the keys of a [databases.<name>] table.
var databaseFields = []field[Database]{
	{"discovery", func(d *Database) any { return &d.Discovery }},
	{"host", func(d *Database) any { return &d.Host }},
	{"hosts", func(d *Database) any { return &d.Hosts }},
	{"port", func(d *Database) any { return &d.Port }},
	{"dbname", func(d *Database) any { return &d.DBName }},
	{"user", func(d *Database) any { return &d.User }},
	{"password", func(d *Database) any { return &d.Password }},
	{"password_env", func(d *Database) any { return &d.PasswordEnv }},
	{"password_file", func(d *Database) any { return &d.PasswordFile }},
	{"pool_size", func(d *Database) any { return &d.PoolSize }},
	{"pool_mode", func(d *Database) any { return &d.PoolMode }},
	{"min_pool_size", func(d *Database) any { return &d.MinPoolSize }},
	{"reserve_pool", func(d *Database) any { return &d.ReservePool }},
	{"max_db_connections", func(d *Database) any { return &d.MaxDBConns }},
	{"connect_query", func(d *Database) any { return &d.ConnectQuery }},
	{"auth_user", func(d *Database) any { return &d.AuthUser }},
	{"auth_dbname", func(d *Database) any { return &d.AuthDBName }},
	{"application_name", func(d *Database) any { return &d.ApplicationName }},
	{"patroni_urls", func(d *Database) any { return &d.PatroniURLs }},
	{"patroni_username", func(d *Database) any { return &d.PatroniUsername }},
	{"patroni_password", func(d *Database) any { return &d.PatroniPassword }},
	{"patroni_password_env", func(d *Database) any { return &d.PatroniPasswordEnv }},
	{"patroni_password_file", func(d *Database) any { return &d.PatroniPasswordFile }},
	{"patroni_ca_file", func(d *Database) any { return &d.PatroniCAFile }},
	{"patroni_cert_file", func(d *Database) any { return &d.PatroniCertFile }},
	{"patroni_key_file", func(d *Database) any { return &d.PatroniKeyFile }},
	{"consul_addr", func(d *Database) any { return &d.ConsulAddr }},
	{"consul_service", func(d *Database) any { return &d.ConsulService }},
	{"consul_namespace", func(d *Database) any { return &d.ConsulNamespace }},
	{"consul_token", func(d *Database) any { return &d.ConsulToken }},
	{"consul_token_env", func(d *Database) any { return &d.ConsulTokenEnv }},
	{"consul_token_file", func(d *Database) any { return &d.ConsulTokenFile }},
	{"consul_datacenter", func(d *Database) any { return &d.ConsulDatacenter }},
	{"consul_scheme", func(d *Database) any { return &d.ConsulScheme }},
	{"consul_ca_file", func(d *Database) any { return &d.ConsulCAFile }},
	{"poll_interval", func(d *Database) any { return &d.PollInterval }},
	{"fast_poll_interval", func(d *Database) any { return &d.FastPollInterval }},
	{"read_only", func(d *Database) any { return &d.ReadOnly }},
	{"on_split_brain", func(d *Database) any { return &d.OnSplitBrain }},
	{"target_session_attrs", func(d *Database) any { return &d.TargetSessionAttrs }},
	{"read_only_routing", func(d *Database) any { return &d.ReadOnlyRouting }},
	{"max_replica_lag", func(d *Database) any { return &d.MaxReplicaLag }},
}

// userFields are the keys of a [users.<name>] table.
var userFields = []field[User]{
	{"password", func(u *User) any { return &u.Password }},
	{"password_env", func(u *User) any { return &u.PasswordEnv }},
	{"password_file", func(u *User) any { return &u.PasswordFile }},
	{"pool_mode", func(u *User) any { return &u.PoolMode }},
	{"max_user_connections", func(u *User) any { return &u.MaxUserConns }},
	{"pool_size", func(u *User) any { return &u.PoolSize }},
}

// pathKeys are the keys naming files. A relative path is resolved against
// the directory of the config file that names it.
var pathKeys = map[string]bool{
	"auth_file":                  true,
	"auth_hba_file":              true,
	"client_tls_cert_file":       true,
	"client_tls_key_file":        true,
	"client_tls_ca_file":         true,
	"server_tls_cert_file":       true,
	"server_tls_key_file":        true,
	"server_tls_ca_file":         true,
	"password_file":              true,
	"consul_token_file":          true,
	"consul_ca_file":             true,
	"http_token_file":            true,
	"patroni_password_file":      true,
	"consul_register_ca_file":    true,
	"consul_register_token_file": true,
	"patroni_ca_file":            true,
	"patroni_cert_file":          true,
	"patroni_key_file":           true,
}

// discoveryOnlyKeys are the database keys that mean something for some
// discovery kinds only. Setting one for another kind is a problem: it would
// be silently ignored, and the user surely meant something by it.
var discoveryOnlyKeys = map[string][]string{
	"host":              {DiscoveryStatic},
	"hosts":             {DiscoveryStatic},
	"port":              {DiscoveryStatic},
	"patroni_urls":      {DiscoveryPatroni},
	"consul_addr":       {DiscoveryConsul},
	"consul_service":    {DiscoveryConsul},
	"consul_namespace":  {DiscoveryConsul},
	"consul_token":      {DiscoveryConsul},
	"consul_token_env":  {DiscoveryConsul},
	"consul_token_file": {DiscoveryConsul},
	"consul_datacenter": {DiscoveryConsul},
	"consul_scheme":     {DiscoveryConsul},
	"consul_ca_file":    {DiscoveryConsul},
	// Patroni's REST API: read by patroni discovery, and POSTed to by the
	// switchover with either (Consul's KV gives the members' api_url).
	"patroni_username":      {DiscoveryPatroni, DiscoveryConsul},
	"patroni_password":      {DiscoveryPatroni, DiscoveryConsul},
	"patroni_password_env":  {DiscoveryPatroni, DiscoveryConsul},
	"patroni_password_file": {DiscoveryPatroni, DiscoveryConsul},
	"patroni_ca_file":       {DiscoveryPatroni, DiscoveryConsul},
	"patroni_cert_file":     {DiscoveryPatroni, DiscoveryConsul},
	"patroni_key_file":      {DiscoveryPatroni, DiscoveryConsul},
}

// defaultProxy is [proxy] with nothing set: PgBouncer's defaults, except
// where types.go says otherwise (listen_addr, pool_mode, max_message_size).
func defaultProxy() Proxy {
	return Proxy{
		ListenAddrs:   []string{"127.0.0.1"},
		ListenAddr:    "127.0.0.1",
		ListenPort:    6432,
		UnixSocketDir: "/tmp",

		AuthType:  AuthMD5,
		AuthQuery: DefaultAuthQuery,

		PoolMode:              PoolModeTransaction,
		MaxClientConn:         100,
		DefaultPoolSize:       20,
		ReservePoolTimeout:    5 * time.Second,
		ServerLifetime:        3600 * time.Second,
		ServerIdleTimeout:     600 * time.Second,
		ServerConnectTimeout:  15 * time.Second,
		ServerLoginRetry:      15 * time.Second,
		QueryWaitTimeout:      120 * time.Second,
		ClientLoginTimeout:    60 * time.Second,
		ServerResetQuery:      "DISCARD ALL",
		MaxPreparedStatements: 200,
		MaxMessageSize:        DefaultMaxMessageSize,
		LargeMessageBudget:    DefaultLargeMessageBudget,

		ClientTLS: TLS{SSLMode: "disable"},
		ServerTLS: TLS{SSLMode: "prefer"},

		HoldTimeout:        30 * time.Second,
		DrainTimeout:       30 * time.Second,
		PauseTimeoutAction: PauseTimeoutResume,
		OnSplitBrain:       SplitBrainHold,
		ShutdownTimeout:    30 * time.Second,
		LogLevel:           "info",
		LogFormat:          LogFormatText,
		LogConnections:     true,
		LogDisconnections:  true,

		ConsulRegisterAddr:    "127.0.0.1:8500",
		ConsulRegisterScheme:  "http",
		ConsulRegisterService: "pauseproxy",
	}
}

// defaultDatabase is [databases.<name>] with only discovery set: what every
// other key means when it is left out. Several defaults come from [proxy].
func defaultDatabase(p *Proxy, name, discovery string) Database {
	d := Database{
		Name:             name,
		Port:             5432,
		DBName:           name,
		PoolSize:         p.DefaultPoolSize,
		MinPoolSize:      p.MinPoolSize,
		ReservePool:      p.ReservePoolSize,
		MaxDBConns:       p.MaxDBConnections,
		Discovery:        discovery,
		PollInterval:     time.Second,
		FastPollInterval: 100 * time.Millisecond,
		OnSplitBrain:     p.OnSplitBrain,

		TargetSessionAttrs: TargetReadWrite,
		ReadOnlyRouting:    RoutePrimary,
	}
	if name == "*" {
		d.DBName = "" // the name the client asks for; see DatabaseFor
	}
	switch discovery {
	case DiscoveryStatic:
		d.Host = "127.0.0.1"
		d.Hosts = []string{joinHostPort(d.Host, d.Port)}
	case DiscoveryConsul:
		d.ConsulAddr = "127.0.0.1:8500"
		d.ConsulNamespace = "service" // Patroni's default consul namespace
		d.ConsulScheme = "http"
	}
	return d
}
