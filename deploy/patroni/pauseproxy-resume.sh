#!/bin/bash
# Patroni callback for on_role_change, on_restart and on_start: when this
# node is (again) the primary, wait until it accepts writes, then resume
# the proxies that pauseproxy-pause.sh paused.
#
# Patroni calls callbacks asynchronously with three arguments: the action,
# the role (master, primary or promoted for a primary; the names vary with
# the Patroni version) and the scope. On any other role it does nothing.
#
# RESUME is sent even when the node has not become writable within
# PAUSEPROXY_PROMOTE_WAIT: traffic must never stay paused for good.
# pauseproxy itself sends nothing to a node it has not verified writable,
# so the held transactions keep waiting (up to hold_timeout) for a primary.
#
# Settings: as pauseproxy-pause.sh, plus
#   PAUSEPROXY_PROMOTE_WAIT  seconds to wait for pg_is_in_recovery() = false
#                            (default 60).
set -u

conf=${PAUSEPROXY_CALLBACK_CONF:-/etc/patroni/pauseproxy-callbacks.conf}
if [[ -r $conf ]]; then
	# shellcheck source=/dev/null
	. "$conf"
fi

log() { echo "pauseproxy-resume: $*" >&2; }
redact() { sed -E 's#//([^:@/]*):[^@/]*@#//\1:***@#' <<<"$1"; }

action=${1:-} role=${2:-}
case $role in
master | primary | promoted) ;;
*) exit 0 ;;
esac
if [[ -z ${PAUSEPROXY_ADMIN_URLS:-} ]]; then
	log "PAUSEPROXY_ADMIN_URLS is not set; nothing to resume"
	exit 1
fi
timeout_s=${PAUSEPROXY_TIMEOUT:-35}

# Patroni's role is known before promotion has finished; only
# pg_is_in_recovery() = false proves the node takes writes.
deadline=$((SECONDS + ${PAUSEPROXY_PROMOTE_WAIT:-60}))
until [[ $(psql -XtAq -d "${PAUSEPROXY_LOCAL_PG:-dbname=postgres}" -c 'SELECT pg_is_in_recovery()' 2>/dev/null) == f ]]; do
	if ((SECONDS >= deadline)); then
		log "$action: still not writable after ${PAUSEPROXY_PROMOTE_WAIT:-60}s; resuming anyway"
		break
	fi
	sleep 0.2
done

cmds=()
if [[ -z ${PAUSEPROXY_DATABASES:-} ]]; then
	cmds=(-c RESUME)
else
	for db in $PAUSEPROXY_DATABASES; do
		cmds+=(-c "RESUME $db")
	done
fi

# Each command on its own: a proxy that was not paused answers RESUME with
# an error (PgBouncer does), which must not keep the next database paused.
urls=() pids=()
for url in $PAUSEPROXY_ADMIN_URLS; do
	timeout "$timeout_s" psql -XtAq -d "$url" "${cmds[@]}" >/dev/null &
	urls+=("$url") pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
	if wait "${pids[$i]}"; then
		log "$action: resumed $(redact "${urls[$i]}")"
	else
		log "$action: RESUME failed on $(redact "${urls[$i]}") (it may not have been paused)"
		failed=1
	fi
done
exit "$failed"
