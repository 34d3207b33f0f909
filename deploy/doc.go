// Package deploy holds no code: its directory holds the deployment files
// (kubernetes/, systemd/, patroni/; the Dockerfile is at the repository
// root) and its tests check them against the program they deploy.
//
// The tests build the binary the way the Dockerfile does (its go build
// line, run on a copy of the build context that .dockerignore leaves) and
// use that binary for everything else: every pauseproxy.toml the manifests
// and the systemd unit embed must pass `pauseproxy check-config`; the
// probes, ports, socket directories, secrets and shutdown budgets they name
// must agree with that config; passwords from the environment must log in
// to a real PostgreSQL; SIGTERM under pgbench load must lose no committed
// transaction; and the Patroni callback scripts must pause and resume a
// real PgBouncer admin console, whose commands pauseproxy's console keeps.
//
// Nothing here may be needed to build or run pauseproxy: the image leaves
// deploy/ out of its build context.
package deploy
