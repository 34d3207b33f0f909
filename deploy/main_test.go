package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
)

// testVersion is passed as the Dockerfile's VERSION build arg.
const testVersion = "0.0.0-deploytest"

// appPassword is the PostgreSQL password of the role app, which the tests
// hand to pauseproxy through the environment and expect never to see in
// its output.
const appPassword = "app-Secret-7f1c"

var (
	repoRoot string       // the repository, two levels up from here
	image    *dockerBuild // the Dockerfile's build, run by TestMain
	bin      string       // the binary the image would ship
	pg       *pgtest.Cluster
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

// runMain builds the binary as the Dockerfile does, starts the package's
// PostgreSQL cluster (md5, as the seeds' Patroni clusters use) and runs
// the tests; like pgtest.Main it never skips and fails on leaked
// goroutines.
func runMain(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = filepath.Dir(wd)
	work, err := os.MkdirTemp("", "pauseproxy-image")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(work)
	image, err = buildLikeDockerfile(repoRoot, work, map[string]string{"VERSION": testVersion})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: build as the Dockerfile does: %v\n", err)
		return 1
	}
	bin = image.binary

	pg, err = pgtest.Start(pgtest.Options{AuthMethod: "md5"})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot start the test PostgreSQL cluster: %v\n", err)
		return 1
	}
	defer pg.Stop()
	err = pg.Exec(context.Background(), `CREATE ROLE app LOGIN PASSWORD '`+appPassword+`';
		CREATE TABLE drain_log (client int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
		GRANT ALL ON drain_log TO app`)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: setup:", err)
		return 1
	}
	code := m.Run()
	if err := pg.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: stop the test PostgreSQL cluster:", err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: goroutines left after the tests:", err)
			code = 1
		}
	}
	return code
}

// checkConfig validates a pauseproxy.toml as `pauseproxy check-config`
// does, in-process (for the typed values) and with the binary (for the
// exit status the operator sees). env is set for both. root, when not "",
// stands for the root of the container or host the file is deployed to:
// every quoted absolute path in text under one of dirs becomes root+path,
// and those directories are created; the returned config has the deployed
// paths back in unix_socket_dir and auth_file.
func checkConfig(t *testing.T, text string, env map[string]string, root string, dirs []string) *config.Config {
	t.Helper()
	for _, d := range dirs {
		if root == "" {
			t.Fatal("checkConfig: dirs without root")
		}
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		text = strings.ReplaceAll(text, `"`+d, `"`+filepath.Join(root, d))
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	file := filepath.Join(t.TempDir(), "pauseproxy.toml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("config does not validate:\n%v\n--- config:\n%s", err, text)
	}
	for _, w := range cfg.Warnings {
		t.Errorf("config warning: %s", w)
	}
	// Give the checks the paths as deployed.
	if root != "" {
		for _, p := range []*string{&cfg.Proxy.UnixSocketDir, &cfg.Proxy.AuthFile} {
			if rest, ok := strings.CutPrefix(*p, root); ok {
				*p = rest
			}
		}
	}
	// The binary gets only env: a variable the config needs but the
	// deployment does not set fails here.
	cmd := exec.Command(bin, "check-config", file)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pauseproxy check-config: %v\n%s", err, out)
	}
	return cfg
}

// proxyProcess is a pauseproxy started by startProxy.
type proxyProcess struct {
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan struct{} // closed when it has exited; then err is set
	err  error
}

// startProxy runs the binary with --config file (and --allow-root: the
// tests run as root, the deployments do not) and env (only env: no
// variable of the test process leaks in), waits until dsn logs in, and
// kills it at the end of the test.
func startProxy(t *testing.T, file string, env []string, dsn string) *proxyProcess {
	t.Helper()
	p := &proxyProcess{cmd: exec.Command(bin, "--allow-root", "--config", file), logs: new(bytes.Buffer), done: make(chan struct{})}
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.wait()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("pauseproxy log:\n%s", p.logs)
		}
	})
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := pgx.Connect(ctx, dsn)
		if err == nil {
			c.Close(ctx)
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("pauseproxy exited at start: %v\n%s", p.err, p.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pauseproxy does not accept logins: %v\n%s", err, p.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wait is the goroutine that reaps the process.
func (p *proxyProcess) wait() {
	p.err = p.cmd.Wait()
	close(p.done)
}

// freePort returns a free TCP port on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}
