#!/usr/bin/env bash
# pgx-suite.sh: run pgx's own test suite (packages pgx, pgconn, pgtype,
# pgxpool, of the pgx version in go.mod) through pauseproxy in session mode.
#
#   sudo bash scripts/pgx-suite.sh                 # through the proxy
#   sudo bash scripts/pgx-suite.sh --direct        # straight at PostgreSQL (the baseline)
#   sudo bash scripts/pgx-suite.sh -- -run TestConnOnNotice   # extra go test arguments
#
# It starts a throwaway PostgreSQL 15 cluster prepared as pgx's CI prepares
# its test database (ci/setup_test.bash: pgx's testsetup/pg_hba.conf and
# testsetup/postgresql_setup.sql, so hstore, ltree, the uint64 domain and
# the pgx_md5, pgx_scram, pgx_pw users), puts pauseproxy in front of it
# (pool_mode = "session"; each client logs in to the server as itself,
# with its password from the proxy's auth_file) and runs `go test` in a
# writable copy of pgx's source against the proxy. It prints one
# line per package, ok or FAIL, then the failed tests, and exits 1 if any
# package failed.
#
# The connection strings are the ones pgx's CI sets for PostgreSQL 15
# (.github/workflows/ci.yml), pointed at the proxy: PGX_TEST_DATABASE, and
# the optional PGX_TEST_UNIX_SOCKET_CONN_STRING, _TCP_, _MD5_PASSWORD_,
# _SCRAM_PASSWORD_, _PLAIN_PASSWORD_ and _TLS_CLIENT_CONN_STRING with
# PGX_SSL_PASSWORD. As there, TLS is on (pgx's testsetup/certs: a CA,
# localhost, and pgx_sslcert's client certificate) on both sides of the
# proxy, so sslmode=prefer connections use it. The proxy authenticates
# clients with auth_type = "hba" and pgx's own pg_hba.conf lines (trust on
# the socket; md5, scram-sha-256 and password per user over TCP; a client
# certificate for pgx_sslcert), so each test meets the method it means to
# test; its server logins are the client's own (pgx_sslcert's with the
# certificate). Left unset, as in pgx's CI, so their tests skip as pgx's
# tests allow (CONTRIBUTING.md, "Optional Tests"): PGX_TEST_TLS_CONN_STRING
# and _SCRAM_PLUS_ (pgx's CI comments them out; through the proxy,
# TestConnectTLS/WithoutChannelBinding passes and the channel_binding=
# require cases fail: the proxy offers no SCRAM-SHA-256-PLUS), OAuth
# (PostgreSQL 18), PgBouncer (wants transaction pooling), CockroachDB and
# CrateDB.
#
# Needs: root (PostgreSQL runs as the postgres OS user through setpriv), Go,
# PostgreSQL 15 binaries (PGBIN, default /usr/lib/postgresql/15/bin),
# openssl, and pgx's source in the module cache (go mod download fetches
# it). Takes a few minutes of two CPUs; the logs stay in the work
# directory it prints.
# Environment: PGBIN, WORK (a directory to use, default a new one in /tmp),
# KEEP=1 to leave it behind, RACE=1 to add -race, PKGS to choose packages
# (default ". ./pgconn ./pgtype ./pgxpool"), POOL_MODE=transaction to try
# transaction mode instead (it also sets PGX_TEST_PGBOUNCER_CONN_STRING,
# so pgx's tests for a transaction pooler run; the suite as a whole is
# not expected to pass there: session features such as temporary tables
# across transactions are not carried).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH=/usr/local/go/bin:$PATH
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
PKGS="${PKGS:-. ./pgconn ./pgtype ./pgxpool}"
POOL_MODE="${POOL_MODE:-session}"

direct=0
gotest_args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--direct) direct=1 ;;
	--) shift; gotest_args=("$@"); break ;;
	-h|--help) sed -n '2,49p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "pgx-suite.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

if [ "$(id -u)" != 0 ]; then
	echo "pgx-suite.sh: run as root: PostgreSQL is started as the postgres OS user" >&2
	exit 2
fi

WORK="${WORK:-$(mktemp -d /tmp/pgx-suite.XXXXXX)}"
mkdir -p "$WORK"
chmod 755 "$WORK"
echo "work directory: $WORK"

pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	if [ -f "$WORK/data/postmaster.pid" ]; then
		as_postgres "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
	fi
	if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- pgx's source, writable (the module cache is read-only) ---------------
pgxver="$(cd "$root" && go list -m -f '{{.Version}}' github.com/jackc/pgx/v5)"
pgxsrc="$(cd "$root" && go mod download -json "github.com/jackc/pgx/v5@$pgxver" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
cp -r "$pgxsrc" "$WORK/pgx"
chmod -R u+w "$WORK/pgx"

# --- Certificates: pgx's testsetup/certs (valid until 2046) --------------
# pgx_sslcert.key is encrypted with PGX_SSL_PASSWORD (certpw) in a PEM
# block pgx labels CERTIFICATE; the proxy, presenting that certificate to
# the server for pgx_sslcert's logins, gets a decrypted copy.
mkdir -p "$WORK/certs"
for f in ca.pem localhost.crt localhost.key pgx_sslcert.crt pgx_sslcert.key; do
	base64 -d "$WORK/pgx/testsetup/certs/$f.b64" >"$WORK/certs/$f"
done
sed 's/CERTIFICATE-----/RSA PRIVATE KEY-----/' "$WORK/certs/pgx_sslcert.key" |
	openssl rsa -passin pass:certpw -out "$WORK/certs/pgx_sslcert.plain.key" 2>/dev/null
chmod 600 "$WORK/certs/"*.key

# --- PostgreSQL, as pgx's ci/setup_test.bash prepares it ------------------
pgport="$(free_port)"
mkdir -p "$WORK/data" "$WORK/sock" "$WORK/pglog"
chown postgres:postgres "$WORK/data" "$WORK/sock" "$WORK/pglog"
as_postgres "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust >"$WORK/initdb.log" 2>&1
cat >>"$WORK/data/postgresql.conf" <<EOF
port = $pgport
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/sock'
max_connections = 200
fsync = off
EOF
cat "$WORK/pgx/testsetup/postgresql_ssl.conf" >>"$WORK/data/postgresql.conf"
install -o postgres -g postgres -m 600 "$WORK/certs/localhost.key" "$WORK/data/server.key"
install -o postgres -g postgres -m 644 "$WORK/certs/localhost.crt" "$WORK/data/server.crt"
install -o postgres -g postgres -m 644 "$WORK/certs/ca.pem" "$WORK/data/root.crt"
cp "$WORK/pgx/testsetup/pg_hba.conf" "$WORK/data/pg_hba.conf"
as_postgres "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pglog/postgres.log" -w start >/dev/null
psql=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/sock" -p "$pgport" -U postgres)
as_postgres "${psql[@]}" -d postgres -c 'create database pgx_test' >/dev/null
(cd "$WORK/pgx" && as_postgres "${psql[@]}" -d pgx_test -f testsetup/postgresql_setup.sql >/dev/null)

# --- pauseproxy, session mode ---------------------------------------------
if [ "$direct" = 1 ]; then
	host=127.0.0.1 port=$pgport sock="$WORK/sock" sockuser=postgres
else
	(cd "$root" && go build -o "$WORK/pauseproxy" ./cmd/pauseproxy)
	pxport="$(free_port)"
	cat >"$WORK/userlist.txt" <<EOF
"pgx_md5" "secret"
"pgx_scram" "secret"
"pgx_pw" "secret"
EOF
	cp "$WORK/pgx/testsetup/pg_hba.conf" "$WORK/hba.conf"
	mkdir -p "$WORK/pxsock"
	cat >"$WORK/pauseproxy.toml" <<EOF
[proxy]
listen_addr = "127.0.0.1"
listen_port = $pxport
unix_socket_dir = "$WORK/pxsock"
auth_type = "hba"
auth_hba_file = "hba.conf"
auth_file = "userlist.txt"
pool_mode = "$POOL_MODE"
max_client_conn = 400
default_pool_size = 100
allow_root = true
client_tls_sslmode = "prefer"
client_tls_cert_file = "certs/localhost.crt"
client_tls_key_file = "certs/localhost.key"
client_tls_ca_file = "certs/ca.pem"
server_tls_sslmode = "verify-full"
server_tls_ca_file = "certs/ca.pem"
server_tls_cert_file = "certs/pgx_sslcert.crt"
server_tls_key_file = "certs/pgx_sslcert.plain.key"

[databases.pgx_test]
host = "127.0.0.1"
port = $pgport
EOF
	"$WORK/pauseproxy" --config "$WORK/pauseproxy.toml" >"$WORK/pauseproxy.log" 2>&1 &
	pids+=($!)
	up=0
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$pxport") 2>/dev/null; then up=1; break; fi
		sleep 0.1
	done
	if [ "$up" != 1 ]; then
		echo "pgx-suite.sh: pauseproxy did not start listening on 127.0.0.1:$pxport:" >&2
		cat "$WORK/pauseproxy.log" >&2
		exit 1
	fi
	host=127.0.0.1 port=$pxport sock="$WORK/pxsock" sockuser=pgx_md5
fi

# --- pgx's tests ------------------------------------------------------------
# Only the connection strings above (see the top).
for v in $(env | sed -n 's/^\(PGX_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
unset PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSSLMODE || true
export PGX_TEST_DATABASE="host=$host port=$port user=pgx_md5 password=secret dbname=pgx_test"
export PGX_TEST_UNIX_SOCKET_CONN_STRING="host=$sock port=$port user=$sockuser dbname=pgx_test"
export PGX_TEST_TCP_CONN_STRING="host=$host port=$port user=pgx_md5 password=secret dbname=pgx_test"
export PGX_TEST_MD5_PASSWORD_CONN_STRING="host=$host port=$port user=pgx_md5 password=secret dbname=pgx_test"
export PGX_TEST_SCRAM_PASSWORD_CONN_STRING="host=$host port=$port user=pgx_scram password=secret dbname=pgx_test channel_binding=disable"
export PGX_TEST_PLAIN_PASSWORD_CONN_STRING="host=$host port=$port user=pgx_pw password=secret dbname=pgx_test"
export PGX_TEST_TLS_CLIENT_CONN_STRING="host=localhost port=$port user=pgx_sslcert sslmode=verify-full sslrootcert=$WORK/certs/ca.pem sslcert=$WORK/certs/pgx_sslcert.crt sslkey=$WORK/certs/pgx_sslcert.key dbname=pgx_test"
export PGX_SSL_PASSWORD=certpw
if [ "$direct" = 0 ] && [ "$POOL_MODE" = transaction ]; then
	export PGX_TEST_PGBOUNCER_CONN_STRING="$PGX_TEST_DATABASE"
fi
env | grep '^PGX_' | sort

race=()
[ "${RACE:-0}" = 1 ] && race=(-race)
status=0
: >"$WORK/failed.txt"
for pkg in $PKGS; do
	name="pgx${pkg#.}"
	log="$WORK/test-${name//\//-}.log"
	if (cd "$WORK/pgx" && go test "${race[@]}" -count=1 -timeout 20m -v "$pkg" "${gotest_args[@]}") >"$log" 2>&1; then
		echo "ok    $name"
	else
		echo "FAIL  $name   ($log)"
		status=1
		grep -E '^\s*--- FAIL' "$log" | sed "s|^\s*--- FAIL: |$name |" >>"$WORK/failed.txt" || true
		grep -E '^(panic:|FAIL\s|.*test timed out)' "$log" | head -3 | sed "s|^|$name: |" >>"$WORK/failed.txt" || true
	fi
done
if [ -s "$WORK/failed.txt" ]; then
	echo "failed:"
	sed 's/^/  /' "$WORK/failed.txt"
fi
exit $status
