#!/usr/bin/env bash
# Installs the Debian packages pauseproxy's tests and demo need, only those
# missing: PostgreSQL 15 server and client (psql, pgbench), Patroni with its
# etcd and Consul clients, etcd, PgBouncer (for the side-by-side tests and
# benchmarks), gcc for go test -race, and the client drivers of
# internal/drivers: psycopg 3, psycopg2, asyncpg, pgjdbc with a JDK, Node.js
# with npm, and the npm packages of internal/drivers/testdata/npm-packages.txt
# (into $HOME/.cache/pauseproxy/npm, where the tests look). Package scripts
# are kept from starting services, and Debian's default 5432 cluster is not
# created (or is stopped). Run as root. Used by .ci/run and scripts/demo.sh.
set -euo pipefail
export PATH="/usr/local/go/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
policy_rc_d_ours=""
cleanup() {
	if [[ -n $policy_rc_d_ours ]]; then
		rm -f /usr/sbin/policy-rc.d
	fi
}
trap cleanup EXIT

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# service_quiet_stop stops a service started by a package install; best
# effort, for machines with or without systemd.
service_quiet_stop() {
	local svc=$1
	if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	elif [[ -x /etc/init.d/$svc ]]; then
		service "$svc" stop >/dev/null 2>&1 || true
	fi
}

# stop_default_cluster stops the Debian default cluster (15/main on port
# 5432) if one exists and runs, and keeps it from starting at boot.
stop_default_cluster() {
	command -v pg_lsclusters >/dev/null || return 0
	local ver name port status rest
	while read -r ver name port status rest; do
		[[ $ver == 15 && $name == main ]] || continue
		if [[ $status == online* ]]; then
			echo "stopping the default PostgreSQL cluster 15/main (port $port)"
			pg_ctlcluster 15 main stop -m fast >/dev/null 2>&1 || true
		fi
		if [[ -f /etc/postgresql/15/main/start.conf ]] && grep -qx auto /etc/postgresql/15/main/start.conf; then
			echo manual >/etc/postgresql/15/main/start.conf || true
		fi
	done < <(pg_lsclusters -h 2>/dev/null || true)
}

install_packages() {
	local pkgs=()
	[[ -x /usr/lib/postgresql/15/bin/postgres ]] || pkgs+=(postgresql-15)
	{ installed postgresql-client-15 || { command -v psql && command -v pgbench; } >/dev/null; } || pkgs+=(postgresql-client-15)
	{ installed patroni || command -v patroni >/dev/null; } || pkgs+=(patroni)
	# Patroni's DCS clients: etcd (Debian's default) and Consul.
	installed python3-etcd || pkgs+=(python3-etcd)
	installed python3-consul || pkgs+=(python3-consul)
	{ installed etcd-server || command -v etcd >/dev/null; } || pkgs+=(etcd-server)
	{ installed pgbouncer || command -v pgbouncer >/dev/null; } || pkgs+=(pgbouncer)
	# promtool, for the metrics lint test (internal/metrics).
	command -v promtool >/dev/null || pkgs+=(prometheus)
	# go test -race needs cgo, hence a C compiler; go mod download needs
	# the CA certificates.
	command -v gcc >/dev/null || pkgs+=(gcc libc6-dev)
	[[ -f /etc/ssl/certs/ca-certificates.crt ]] || pkgs+=(ca-certificates)
	command -v setpriv >/dev/null || pkgs+=(util-linux)
	# Real drivers through the proxy (internal/drivers). Debian's python3,
	# whatever python3 comes first in PATH.
	installed python3-psycopg || pkgs+=(python3-psycopg)
	installed python3-psycopg2 || pkgs+=(python3-psycopg2)
	installed python3-asyncpg || pkgs+=(python3-asyncpg)
	[[ -f /usr/share/java/postgresql.jar ]] || pkgs+=(libpostgresql-jdbc-java)
	{ command -v javac && command -v java; } >/dev/null || pkgs+=(default-jdk-headless)
	command -v node >/dev/null || pkgs+=(nodejs)
	command -v npm >/dev/null || pkgs+=(npm)

	if ((${#pkgs[@]} == 0)); then
		echo "all packages present"
	else
		echo "installing: ${pkgs[*]}"
		# Keep package scripts from starting services (Debian's
		# policy-rc.d protocol: 101 = action forbidden), and keep the
		# postgresql-15 package from creating the 5432 cluster at all.
		if [[ ! -e /usr/sbin/policy-rc.d ]]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod 755 /usr/sbin/policy-rc.d
			policy_rc_d_ours=1
		fi
		mkdir -p /etc/postgresql-common/createcluster.d
		if [[ ! -e /etc/postgresql-common/createcluster.d/pauseproxy-ci.conf ]]; then
			echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/pauseproxy-ci.conf
		fi
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${pkgs[@]}" </dev/null
		if [[ -n $policy_rc_d_ours ]]; then
			rm -f /usr/sbin/policy-rc.d
			policy_rc_d_ours=""
		fi
		# In case a service started anyway (a policy-rc.d that allows
		# it, or systemd units enabled at install).
		local pkg
		for pkg in "${pkgs[@]}"; do
			case $pkg in
			pgbouncer) service_quiet_stop pgbouncer ;;
			prometheus) service_quiet_stop prometheus ;;
			etcd-server) service_quiet_stop etcd ;;
			patroni) service_quiet_stop patroni ;;
			esac
		done
	fi
	stop_default_cluster

	local tool
	for tool in /usr/lib/postgresql/15/bin/postgres /usr/lib/postgresql/15/bin/initdb; do
		[[ -x $tool ]] || { echo "missing $tool after install" >&2; return 1; }
	done
	for tool in psql pgbench patroni etcd pgbouncer gcc setpriv; do
		command -v "$tool" >/dev/null || { echo "missing $tool after install" >&2; return 1; }
	done
	for tool in javac java node npm; do
		command -v "$tool" >/dev/null || { echo "missing $tool after install" >&2; return 1; }
	done
	[[ -f /usr/share/java/postgresql.jar ]] || { echo "missing /usr/share/java/postgresql.jar after install" >&2; return 1; }
	command -v go >/dev/null || { echo "go not found (looked in PATH and /usr/local/go/bin)" >&2; return 1; }
	go version
}

# install_npm_packages puts the npm packages the node workloads of
# internal/drivers need (pinned in its testdata/npm-packages.txt) into
# $HOME/.cache/pauseproxy/npm, unless they are there at those versions.
# The tests install them there themselves when they are missing.
install_npm_packages() {
	local list=$repo/internal/drivers/testdata/npm-packages.txt
	local dir=${PAUSEPROXY_NPM_DIR:-${HOME:-/root}/.cache/pauseproxy/npm}
	local pkgs=() missing=() line name version
	while read -r line; do
		[[ -z $line || $line == \#* ]] && continue
		pkgs+=("$line")
		name=${line%@*}
		version=${line##*@}
		grep -qs "\"version\": *\"$version\"" "$dir/node_modules/$name/package.json" || missing+=("$line")
	done <"$list"
	if ((${#missing[@]} == 0)); then
		echo "npm packages present in $dir"
		return 0
	fi
	echo "installing npm packages into $dir: ${missing[*]}"
	mkdir -p "$dir"
	npm install --no-audit --no-fund --prefix "$dir" "${pkgs[@]}" </dev/null
}

install_packages
install_npm_packages
