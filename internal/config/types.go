// Package config owns pauseproxy's configuration: the TOML schema, its
// validation into typed values, and the import of an existing pgbouncer.ini
// (with its auth_file). Everything downstream receives a *Config that has
// already been validated; it never re-checks values.
//
// It must not open network connections or start goroutines: loading a config
// is a pure function of the files it reads (and, for secrets, the
// environment).
//
// Entry points: Load reads pauseproxy's TOML; LoadPgBouncerINI imports a
// pgbouncer.ini; ToTOML writes a Config back as TOML (pauseproxy convert);
// ParseAuthFile reads PgBouncer's userlist.txt. Both loaders report every
// problem at once in an *Error, each line naming the file and the key.
// config.example.toml at the repository root documents every key.
//
// Relative paths (auth_file, TLS files, password_file, ...) are resolved
// against the directory of the file that names them, and stored absolute.
package config

import (
	"time"

	"github.com/pauseproxy/pauseproxy/internal/auth"
)

// PoolMode is how long a client keeps a server connection.
type PoolMode string

// The pool modes, with PgBouncer's names and meaning.
const (
	PoolModeSession     PoolMode = "session"
	PoolModeTransaction PoolMode = "transaction"
)

// AuthType is how clients authenticate to the proxy (PgBouncer's auth_type).
type AuthType string

// The supported auth types.
const (
	AuthTrust AuthType = "trust"
	AuthMD5   AuthType = "md5"
	AuthSCRAM AuthType = "scram-sha-256"
	// AuthPlain asks for a clear-text password ("plain" in PgBouncer).
	AuthPlain AuthType = "plain"
	// AuthHBA takes the method from the first line of auth_hba_file that
	// matches the connection (PgBouncer's auth_type = hba).
	AuthHBA AuthType = "hba"
)

// Discovery kinds for [databases.<name>] discovery.
const (
	DiscoveryStatic  = "static"
	DiscoveryPatroni = "patroni"
	DiscoveryConsul  = "consul"
)

// Config is a validated configuration.
type Config struct {
	// File is the path the config was read from (for messages).
	File      string
	Proxy     Proxy
	Databases map[string]*Database
	Users     map[string]*User
	// CancelPeers are the [peers.<id>] tables by peer_id: the instances
	// cancel requests for other peers are forwarded to (peers.go).
	CancelPeers map[int]*Peer
	// Warnings are non-fatal remarks (for example pgbouncer.ini settings
	// that pauseproxy ignores), each naming the key and file.
	Warnings []string
}

// TLS settings for one side (client_tls_* or server_tls_*).
type TLS struct {
	SSLMode  string // disable, allow, prefer, require, verify-ca, verify-full
	CertFile string
	KeyFile  string
	CAFile   string
}

// Proxy is the [proxy] table. Field comments give the TOML key.
type Proxy struct {
	// ListenAddrs is listen_addr, as PgBouncer takes it: the addresses
	// TCP clients connect to, each an IP address (IPv6 without brackets)
	// or a host name (every address it resolves to), or "*" for every
	// address, IPv4 and IPv6. TOML gives a string, a comma-separated
	// list ("127.0.0.1, ::1") or an array of strings; a pgbouncer.ini the
	// comma-separated list. Default ["127.0.0.1"]; empty ("") disables
	// TCP.
	ListenAddrs []string
	// ListenAddr is the first of ListenAddrs ("*" given as "0.0.0.0"),
	// "" when there is none: the one address of code that needs one (the
	// operator commands' way to this proxy's admin console, the Consul
	// registration's default address). Set by loading, not a key.
	ListenAddr    string
	ListenPort    int    // listen_port, default 6432
	UnixSocketDir string // unix_socket_dir, default "/tmp"; "" disables
	HTTPListen    string // http_listen, "" (default) disables metrics/health HTTP

	AuthType AuthType // auth_type, default md5
	AuthFile string   // auth_file
	// AuthHBAFile is auth_hba_file: the pg_hba.conf-style rules of
	// auth_type = hba. HBA holds them parsed (nil for other auth types).
	AuthHBAFile string
	HBA         *auth.HBA
	AuthUser    string   // auth_user
	AuthDBName  string   // auth_dbname: the database entry auth_query runs in ("": the client's)
	AuthQuery   string   // auth_query, PgBouncer's default
	AdminUsers  []string // admin_users
	StatsUsers  []string // stats_users

	PoolMode               PoolMode      // pool_mode, default transaction
	MaxClientConn          int           // max_client_conn, default 100
	DefaultPoolSize        int           // default_pool_size, default 20
	MinPoolSize            int           // min_pool_size, default 0
	ReservePoolSize        int           // reserve_pool_size, default 0
	ReservePoolTimeout     time.Duration // reserve_pool_timeout, default 5s
	MaxDBConnections       int           // max_db_connections, default 0 (unlimited)
	MaxUserConnections     int           // max_user_connections, default 0 (unlimited)
	ServerLifetime         time.Duration // server_lifetime, default 3600s
	ServerIdleTimeout      time.Duration // server_idle_timeout, default 600s
	ServerConnectTimeout   time.Duration // server_connect_timeout, default 15s
	ServerLoginRetry       time.Duration // server_login_retry, default 15s
	QueryWaitTimeout       time.Duration // query_wait_timeout, default 120s; 0 disables
	QueryTimeout           time.Duration // query_timeout, default 0 (disabled)
	ClientLoginTimeout     time.Duration // client_login_timeout, default 60s
	ClientIdleTimeout      time.Duration // client_idle_timeout, default 0 (disabled)
	IdleTransactionTimeout time.Duration // idle_transaction_timeout, default 0 (disabled)
	TransactionTimeout     time.Duration // transaction_timeout (PgBouncer 1.25), default 0 (disabled)
	ServerResetQuery       string        // server_reset_query, default "DISCARD ALL"; "" disables
	ServerResetQueryAlways bool          // server_reset_query_always, default false
	IgnoreStartupParams    []string      // ignore_startup_parameters
	MaxPreparedStatements  int           // max_prepared_statements, default 200; 0 disables
	MaxMessageSize         int           // max_message_size in bytes, default 64 MiB (DefaultMaxMessageSize); pkt_buf is unrelated
	LargeMessageBudget     int           // large_message_budget in bytes, default 256 MiB; 0 = no bound
	ApplicationNameAddHost bool          // application_name_add_host

	ClientTLS TLS // client_tls_sslmode (default disable), client_tls_cert_file, client_tls_key_file, client_tls_ca_file
	ServerTLS TLS // server_tls_sslmode (default prefer), server_tls_cert_file, server_tls_key_file, server_tls_ca_file

	// pauseproxy's own settings.
	HoldTimeout     time.Duration // hold_timeout, default 30s: the longest one transaction waits in a hold
	DrainTimeout    time.Duration // drain_timeout, default 30s: how long PAUSE waits for in-flight transactions
	ShutdownTimeout time.Duration // shutdown_timeout, default 30s: SIGTERM's bound on in-flight transactions
	LogLevel        string        // log_level: debug, info (default), warn, error
	// LogFormat is log_format: "text" (the default: log/slog's
	// key=value lines) or "json" (one JSON object per line, for log
	// collectors). Read at start; a reload that changes it warns.
	LogFormat string
	// LogConnections and LogDisconnections are PgBouncer's
	// log_connections and log_disconnections (default true): one INFO
	// line per client login (user, database, address, TLS) and per
	// client that leaves (with how long it stayed). Refusals are logged
	// whatever these say.
	LogConnections    bool
	LogDisconnections bool

	// AllowRoot is allow_root (default false): serve even when started as
	// root. pauseproxy refuses otherwise, as PgBouncer does ("PgBouncer
	// should not run as root"); the commands that do not serve
	// (check-config, ctl, ...) run as anyone.
	AllowRoot bool

	// PauseTimeoutAction is pause_timeout_action: what PAUSE does when
	// drain_timeout passes with transactions still running: "resume"
	// (the default: the PAUSE fails and traffic flows again) or "cancel"
	// (the stragglers' queries are cancelled, their server connections
	// closed if that is not enough, and the PAUSE succeeds).
	PauseTimeoutAction string

	// PeerID is peer_id, default 0 (off): this instance's id among the
	// [peers.<id>] tables, 1 to MaxPeerID, carried in every cancel key it
	// hands out so that a peer receiving the cancel request forwards it
	// here (PgBouncer 1.19+).
	PeerID int

	// OnSplitBrain is on_split_brain: what a managed database does when,
	// after its primary changed, the previous primary still accepts
	// writes (pg_is_in_recovery() = false on both): "hold" (the default:
	// new transactions wait, bounded by hold_timeout, until only one node
	// accepts writes) or "follow" (go to the new primary, with an error
	// logged). The default of each database's own on_split_brain.
	OnSplitBrain string

	// HTTPToken is http_token (or http_token_env / http_token_file),
	// resolved: the bearer token that POST /pause and /resume on
	// http_listen require. "" disables those endpoints.
	HTTPToken     string
	HTTPTokenEnv  string // http_token_env: where HTTPToken came from, "" if inline
	HTTPTokenFile string // http_token_file: where HTTPToken came from, "" if inline

	// Peers is peers: the admin console addresses ("host:port") of the
	// other pauseproxy instances in front of the same databases. The
	// operator commands (pauseproxy switchover, exec, ctl --all) pause
	// them together with this one, all or nothing.
	Peers []string

	// ConsulRegister is consul_register (default false): the serving
	// proxy registers itself in Consul, through the agent at
	// ConsulRegisterAddr, as an instance of ConsulRegisterService, and
	// the operator commands pause every registered instance as well as
	// Peers. The other consul_register_* keys mean nothing without it.
	ConsulRegister bool
	// ConsulRegisterAddr is consul_register_addr, the agent's HTTP API,
	// default "127.0.0.1:8500"; ConsulRegisterScheme is
	// consul_register_scheme, http (default) or https, with
	// ConsulRegisterCAFile (consul_register_ca_file) verifying it.
	ConsulRegisterAddr   string
	ConsulRegisterScheme string
	ConsulRegisterCAFile string
	// ConsulRegisterToken is consul_register_token (or
	// consul_register_token_env / consul_register_token_file), resolved:
	// the ACL token (service:write on the service, and service:read and
	// node:read for the commands' lookup); "" for none.
	ConsulRegisterToken     string
	ConsulRegisterTokenEnv  string // consul_register_token_env: where ConsulRegisterToken came from, "" if inline
	ConsulRegisterTokenFile string // consul_register_token_file: where ConsulRegisterToken came from, "" if inline
	// ConsulRegisterService is consul_register_service, the service name
	// every instance registers under, default "pauseproxy".
	ConsulRegisterService string
	// ConsulRegisterAdvertise is consul_register_advertise: the address
	// ("host:port") the other instances dial to reach this one's admin
	// console. Given as "host" or "host:port" (port: listen_port); by
	// default listen_addr:listen_port, or ":listen_port" when listen_addr
	// is every address ("0.0.0.0", "::"): the empty host stands for the
	// address of the Consul agent's node. After loading it always holds
	// "host:port" (host possibly empty) when ConsulRegister is set.
	ConsulRegisterAdvertise string
	// ConsulRegisterTags is consul_register_tags, the registration's tags.
	ConsulRegisterTags []string
}

// The values of log_format.
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// The values of pause_timeout_action.
const (
	PauseTimeoutResume = "resume"
	PauseTimeoutCancel = "cancel"
)

// The values of on_split_brain.
const (
	SplitBrainHold   = "hold"
	SplitBrainFollow = "follow"
)

// Database is one [databases.<name>] table: what clients call <name>.
//
// The name "*" is PgBouncer's fallback database: a client asking for a
// database that has no table of its own gets the "*" settings, with DBName
// set to the name it asked for unless "*" sets dbname. Use
// Config.DatabaseFor rather than indexing Databases.
type Database struct {
	Name string // the table key
	// Host is host, default "127.0.0.1"; a Unix socket directory when it
	// starts with "/" (the socket is <Host>/.s.PGSQL.<Port>). With hosts,
	// Host and Port are its first address. "" for patroni and consul.
	Host string
	// Hosts is hosts, a list of "host" or "host:port" entries (port
	// defaulting to port), the alternative to host for several servers.
	// After loading, for static discovery, it always holds the normalised
	// "host:port" addresses (net.JoinHostPort form; one entry when
	// host/port were used). Empty for patroni and consul.
	Hosts    []string
	Port     int    // port, default 5432
	DBName   string // dbname, default Name ("" for the "*" database: the requested name)
	User     string // user: when set, every client uses this server login
	Password string // password (or password_env / password_file), resolved
	// PasswordEnv and PasswordFile record where Password came from
	// (password_env, password_file); both empty when it was inline.
	PasswordEnv  string
	PasswordFile string
	PoolSize     int // pool_size, default proxy.default_pool_size
	// PoolMode overrides proxy.pool_mode when not empty.
	PoolMode        PoolMode
	MinPoolSize     int // min_pool_size, default proxy.min_pool_size
	ReservePool     int // reserve_pool, default proxy.reserve_pool_size
	MaxDBConns      int // max_db_connections, default proxy.max_db_connections
	ConnectQuery    string
	AuthUser        string // auth_user override
	AuthDBName      string // auth_dbname override
	ApplicationName string // application_name

	Discovery string // discovery: static (default), patroni, consul
	// Patroni discovery.
	PatroniURLs []string // patroni_urls
	// Patroni's REST API, for patroni and consul discovery (both reach
	// the members' REST API: discovery reads it, the switchover POSTs to
	// it). PatroniUsername and PatroniPassword are HTTP Basic
	// credentials (Patroni's restapi.authentication, which guards
	// POST /switchover, /restart, ...); a patroni_urls entry's own
	// userinfo (http://user:pass@host:8008) is used when they are not
	// set. The files are for an https API (restapi.certfile, cafile,
	// verify_client).
	PatroniUsername     string // patroni_username
	PatroniPassword     string // patroni_password (or patroni_password_env / patroni_password_file), resolved
	PatroniPasswordEnv  string // patroni_password_env: where PatroniPassword came from, "" if inline
	PatroniPasswordFile string // patroni_password_file: where PatroniPassword came from, "" if inline
	PatroniCAFile       string // patroni_ca_file: verifies the API's certificate; "": the system's roots
	PatroniCertFile     string // patroni_cert_file: client certificate, with PatroniKeyFile
	PatroniKeyFile      string // patroni_key_file
	// Consul discovery.
	ConsulAddr       string        // consul_addr, default "127.0.0.1:8500"
	ConsulService    string        // consul_service: the Patroni scope
	ConsulNamespace  string        // consul_namespace (Patroni's consul namespace, default "service")
	ConsulToken      string        // consul_token (or consul_token_env / consul_token_file), resolved
	ConsulTokenEnv   string        // consul_token_env: where ConsulToken came from, "" if inline
	ConsulTokenFile  string        // consul_token_file: where ConsulToken came from, "" if inline
	ConsulDatacenter string        // consul_datacenter
	ConsulScheme     string        // consul_scheme: http (default) or https
	ConsulCAFile     string        // consul_ca_file
	PollInterval     time.Duration // poll_interval, default 1s
	FastPollInterval time.Duration // fast_poll_interval, default 100ms
	// ReadOnly (read_only, default false) says the target is meant to be
	// a replica: the proxy then does not require pg_is_in_recovery() =
	// false before sending it transactions.
	ReadOnly bool
	// OnSplitBrain is on_split_brain, default proxy.on_split_brain.
	OnSplitBrain string

	// TargetSessionAttrs is target_session_attrs, libpq's values (see the
	// Target* constants): which node's role the database's connections
	// need. Default read-write; a pgbouncer.ini [databases] entry without
	// it gets any (what PgBouncer does); read_only = true without it gets
	// any (static) or prefer-standby (patroni, consul).
	TargetSessionAttrs string
	// ReadOnlyRouting is read_only_routing: "primary" (default) or
	// "replica": transactions the client declares read-only run on a
	// replica (docs/reads.md). Only with a read-write or primary target.
	ReadOnlyRouting string
	// MaxReplicaLag is max_replica_lag as written ("" none): bytes ("16MB",
	// "1048576") or a duration ("10s"). Validation fills
	// MaxReplicaLagBytes or MaxReplicaLagTime (0: no limit).
	MaxReplicaLag      string
	MaxReplicaLagBytes int64
	MaxReplicaLagTime  time.Duration
}

// The values of target_session_attrs (libpq's, PostgreSQL docs 34.1.2).
const (
	TargetReadWrite     = "read-write"
	TargetPrimary       = "primary"
	TargetReadOnly      = "read-only"
	TargetStandby       = "standby"
	TargetPreferStandby = "prefer-standby"
	TargetAny           = "any"
)

// The values of read_only_routing.
const (
	RoutePrimary = "primary"
	RouteReplica = "replica"
)

// WantsPrimary reports whether the database's connections go only to the
// verified writable primary (read-write, primary).
func (d *Database) WantsPrimary() bool {
	return d.TargetSessionAttrs == TargetReadWrite || d.TargetSessionAttrs == TargetPrimary
}

// WantsReplica reports whether the database's connections go to replicas
// (read-only, standby, prefer-standby).
func (d *Database) WantsReplica() bool {
	switch d.TargetSessionAttrs {
	case TargetReadOnly, TargetStandby, TargetPreferStandby:
		return true
	}
	return false
}

// RoutesReadsToReplicas reports whether declared read-only transactions
// run on replicas (read_only_routing = "replica").
func (d *Database) RoutesReadsToReplicas() bool {
	return d.ReadOnlyRouting == RouteReplica && d.WantsPrimary()
}

// User is one [users.<name>] table.
type User struct {
	Name         string
	Password     string   // password (plain, md5..., or SCRAM-SHA-256$...), or password_env / password_file, resolved
	PasswordEnv  string   // password_env: where Password came from, "" if inline
	PasswordFile string   // password_file: where Password came from, "" if inline
	PoolMode     PoolMode // pool_mode override
	MaxUserConns int      // max_user_connections
	PoolSize     int      // pool_size override
}
