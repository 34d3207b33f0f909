#!/bin/bash
# Patroni before_stop script (Patroni 3.0.3 and later): pause the proxies in
# front of this cluster before Patroni stops PostgreSQL, when this node is
# the primary. PAUSE returns once the transactions in flight on each proxy
# have finished (within the proxy's drain_timeout), so the stop interrupts
# none of them; new transactions wait in the proxies, not in errors.
#
# Patroni runs before_stop synchronously, without arguments, and stops
# PostgreSQL whatever it returns. pauseproxy-resume.sh resumes the proxies
# once the new (or restarted) primary accepts writes.
#
# The same commands work against PgBouncer's admin console.
#
# Settings, from the environment or from $PAUSEPROXY_CALLBACK_CONF
# (default /etc/patroni/pauseproxy-callbacks.conf, sourced by bash):
#   PAUSEPROXY_ADMIN_URLS  the proxies' admin consoles, space separated:
#                          "postgresql://pauseproxy_admin@10.0.1.5:6432/pgbouncer ..."
#                          Put passwords in ~postgres/.pgpass, not here.
#   PAUSEPROXY_DATABASES   the proxies' database names that lead to this
#                          cluster, space separated; empty: PAUSE everything.
#   PAUSEPROXY_TIMEOUT     seconds one proxy may take to pause (default 35:
#                          a little over drain_timeout's default 30s).
#   PAUSEPROXY_LOCAL_PG    conninfo of the local PostgreSQL, asked whether it
#                          is the primary (default "dbname=postgres": the
#                          default socket, as the postgres OS user).
#   PAUSEPROXY_PAUSE_OPTIONS  appended to each PAUSE; empty for PgBouncer.
#                          With pauseproxy, "EXPIRE '120s'" resumes by itself
#                          if no resume ever comes (Patroni dies mid-way).
set -u

conf=${PAUSEPROXY_CALLBACK_CONF:-/etc/patroni/pauseproxy-callbacks.conf}
if [[ -r $conf ]]; then
	# shellcheck source=/dev/null
	. "$conf"
fi

log() { echo "pauseproxy-pause: $*" >&2; }
# redact hides a password written into a URL by mistake.
redact() { sed -E 's#//([^:@/]*):[^@/]*@#//\1:***@#' <<<"$1"; }

if [[ -z ${PAUSEPROXY_ADMIN_URLS:-} ]]; then
	log "PAUSEPROXY_ADMIN_URLS is not set; nothing to pause"
	exit 1
fi
timeout_s=${PAUSEPROXY_TIMEOUT:-35}

# Only the primary. A replica that stops moves no traffic, and nothing
# would resume proxies paused on its account. Unknown (PostgreSQL already
# down) counts as not primary, for the same reason.
in_recovery=$(psql -XtAq -d "${PAUSEPROXY_LOCAL_PG:-dbname=postgres}" -c 'SELECT pg_is_in_recovery()' 2>/dev/null)
if [[ $in_recovery != f ]]; then
	log "this node is not a running primary (pg_is_in_recovery: ${in_recovery:-unknown}); not pausing"
	exit 0
fi

cmds=()
if [[ -z ${PAUSEPROXY_DATABASES:-} ]]; then
	cmds=(-c "PAUSE ${PAUSEPROXY_PAUSE_OPTIONS:-}")
else
	for db in $PAUSEPROXY_DATABASES; do
		cmds+=(-c "PAUSE $db ${PAUSEPROXY_PAUSE_OPTIONS:-}")
	done
fi

# Every proxy at once: the stop waits for the slowest, not for the sum.
urls=() pids=()
for url in $PAUSEPROXY_ADMIN_URLS; do
	timeout "$timeout_s" psql -XtAq -v ON_ERROR_STOP=1 -d "$url" "${cmds[@]}" >/dev/null &
	urls+=("$url") pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
	if wait "${pids[$i]}"; then
		log "paused $(redact "${urls[$i]}")"
	else
		log "could not pause $(redact "${urls[$i]}") within ${timeout_s}s; its clients may see errors"
		failed=1
	fi
done
exit "$failed"
