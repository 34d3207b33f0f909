package pgtest

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// defaultBinDir is where Debian's postgresql-15 package puts the server
// binaries; they are not on PATH there.
const defaultBinDir = "/usr/lib/postgresql/15/bin"

// BinDir returns the directory that holds the PostgreSQL server binaries
// (initdb, postgres): $PG_BINDIR if set, else /usr/lib/postgresql/15/bin, else
// the output of pg_config --bindir.
func BinDir() (string, error) {
	if dir := os.Getenv("PG_BINDIR"); dir != "" {
		if err := hasServerBinaries(dir); err != nil {
			return "", fmt.Errorf("PG_BINDIR=%s: %w", dir, err)
		}
		return dir, nil
	}
	if hasServerBinaries(defaultBinDir) == nil {
		return defaultBinDir, nil
	}
	out, err := exec.Command("pg_config", "--bindir").Output()
	if err != nil {
		return "", fmt.Errorf("find PostgreSQL server binaries: PG_BINDIR is unset, %s/postgres is missing, and pg_config --bindir failed (%v); install postgresql-15", defaultBinDir, err)
	}
	dir := strings.TrimSpace(string(out))
	if err := hasServerBinaries(dir); err != nil {
		return "", fmt.Errorf("find PostgreSQL server binaries: PG_BINDIR is unset, %s/postgres is missing, pg_config --bindir says %s: %w", defaultBinDir, dir, err)
	}
	return dir, nil
}

func hasServerBinaries(dir string) error {
	for _, name := range []string{"initdb", "postgres"} {
		p := filepath.Join(dir, name)
		info, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("missing %s: %w", p, err)
		}
		if info.IsDir() || info.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable file", p)
		}
	}
	return nil
}

// postgresUser is the OS account PostgreSQL runs as when we are root.
type postgresUser struct {
	cred *syscall.Credential
	uid  int
	gid  int
}

var lookupPostgresUser = sync.OnceValues(func() (*postgresUser, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, so PostgreSQL must run as the postgres OS user: %w (install postgresql-15, which creates it)", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres OS user: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres OS user: gid %q: %w", u.Gid, err)
	}
	// Supplementary groups matter on Debian: ssl-cert gives access to the
	// snakeoil key. This is what setpriv --init-groups would do.
	var groups []uint32
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("postgres OS user: groups: %w", err)
	}
	for _, id := range ids {
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("postgres OS user: group id %q: %w", id, err)
		}
		groups = append(groups, uint32(g))
	}
	return &postgresUser{
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups},
		uid:  int(uid),
		gid:  int(gid),
	}, nil
})

// RunAsPostgres prepares cmd, before it starts, to run as the postgres OS user
// when the test process is root (PostgreSQL and Patroni refuse or misbehave
// as root), and to get SIGKILL when the test process dies unless
// cmd.SysProcAttr already names a Pdeathsig. As a non-root user it changes
// only the parent-death signal.
//
// The parent-death signal fires when the OS thread that started cmd exits,
// not only the process; Go keeps its threads unless a goroutine exits while
// locked with runtime.LockOSThread, so do not start commands from such a
// goroutine.
func RunAsPostgres(cmd *exec.Cmd) error {
	return runAs(cmd, syscall.SIGKILL)
}

func runAs(cmd *exec.Cmd, deathSig syscall.Signal) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if cmd.SysProcAttr.Pdeathsig == 0 {
		cmd.SysProcAttr.Pdeathsig = deathSig
	}
	if os.Geteuid() != 0 {
		return nil
	}
	pu, err := lookupPostgresUser()
	if err != nil {
		return err
	}
	cmd.SysProcAttr.Credential = pu.cred
	return nil
}

// ChownPostgres gives path and everything below it to the postgres OS user
// when the test process is root, so that PostgreSQL (or Patroni) running as
// that user can use it. As a non-root user it does nothing.
func ChownPostgres(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	pu, err := lookupPostgresUser()
	if err != nil {
		return err
	}
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, pu.uid, pu.gid); err != nil {
			return fmt.Errorf("chown %s to postgres: %w", p, err)
		}
		return nil
	})
}

// childEnv is the environment for initdb and postgres: ours without PG*
// variables (a PGPORT or PGDATA meant for something else must not leak in),
// with the C locale so server messages are in English.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}
