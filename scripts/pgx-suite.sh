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
# (pool_mode = "session", scram-sha-256 for clients, the client's own md5
# login to the server) and runs `go test` in a writable copy of pgx's
# source with PGX_TEST_DATABASE pointing at the proxy. It prints one
# line per package, ok or FAIL, then the failed tests, and exits 1 if any
# package failed.
#
# Only PGX_TEST_DATABASE is set. The other PGX_TEST_* variables (unix
# socket, TCP, md5/scram/plain password, TLS, OAuth, PgBouncer, CockroachDB)
# are the ones pgx's tests treat as optional: the tests they enable skip
# without them, as they do on a developer's machine (pgx CONTRIBUTING.md,
# "Optional Tests").
#
# Needs: root (PostgreSQL runs as the postgres OS user through setpriv), Go,
# PostgreSQL 15 binaries (PGBIN, default /usr/lib/postgresql/15/bin), and
# pgx's source in the module cache (go mod download fetches it). Takes a few
# minutes of two CPUs; the logs stay in the work directory it prints.
# Environment: PGBIN, WORK (a directory to use, default a new one in /tmp),
# KEEP=1 to leave it behind, RACE=1 to add -race, PKGS to choose packages
# (default ". ./pgconn ./pgtype ./pgxpool").
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH=/usr/local/go/bin:$PATH
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
PKGS="${PKGS:-. ./pgconn ./pgtype ./pgxpool}"

direct=0
gotest_args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--direct) direct=1 ;;
	--) shift; gotest_args=("$@"); break ;;
	-h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
# pgx's pg_hba.conf without its hostssl lines: TLS is one of the optional setups.
grep -v '^hostssl' "$WORK/pgx/testsetup/pg_hba.conf" >"$WORK/data/pg_hba.conf"
as_postgres "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pglog/postgres.log" -w start >/dev/null
psql=("$PGBIN/../bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/sock" -p "$pgport" -U postgres)
[ -x "${psql[0]}" ] || psql[0]=psql
as_postgres "${psql[@]}" -d postgres -c 'create database pgx_test' >/dev/null
(cd "$WORK/pgx" && as_postgres "${psql[@]}" -d pgx_test -f testsetup/postgresql_setup.sql >/dev/null)

# --- pauseproxy, session mode ---------------------------------------------
if [ "$direct" = 1 ]; then
	dsn="host=127.0.0.1 port=$pgport user=pgx_md5 password=secret dbname=pgx_test"
else
	(cd "$root" && go build -o "$WORK/pauseproxy" ./cmd/pauseproxy)
	pxport="$(free_port)"
	cat >"$WORK/userlist.txt" <<EOF
"pgx_md5" "secret"
"pgx_scram" "secret"
"pgx_pw" "secret"
EOF
	cat >"$WORK/pauseproxy.toml" <<EOF
[proxy]
listen_addr = "127.0.0.1"
listen_port = $pxport
unix_socket_dir = ""
auth_type = "scram-sha-256"
auth_file = "userlist.txt"
pool_mode = "session"
max_client_conn = 400
default_pool_size = 100
allow_root = true

[databases.pgx_test]
host = "127.0.0.1"
port = $pgport
EOF
	"$WORK/pauseproxy" --config "$WORK/pauseproxy.toml" >"$WORK/pauseproxy.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$pxport") 2>/dev/null; then break; fi
		sleep 0.1
	done
	dsn="host=127.0.0.1 port=$pxport user=pgx_md5 password=secret dbname=pgx_test"
fi

# --- pgx's tests ------------------------------------------------------------
# Only PGX_TEST_DATABASE: the other PGX_TEST_* are optional (see the top).
for v in $(env | sed -n 's/^\(PGX_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
unset PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSSLMODE || true
export PGX_TEST_DATABASE="$dsn"
echo "PGX_TEST_DATABASE=$dsn"

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
