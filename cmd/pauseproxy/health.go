package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
)

// healthCmd is `pauseproxy health`: GET /healthz (or /readyz with --ready)
// on the proxy's http_listen, exit 0 on 200 and 1 otherwise. It is the
// container's HEALTHCHECK: the image is distroless (no shell, no curl), so
// the binary probes itself. The address is --addr, else http_listen of
// --config (read without its secrets, which the probe does not need),
// else 127.0.0.1:9930 (the default http_listen).
func healthCmd(args []string, stdout, stderr io.Writer) int {
	const synopsis = "pauseproxy health [--ready] [--addr HOST:PORT | --config FILE] [--timeout 3s]"
	fs := newFlagSet("health", stderr)
	ready := fs.Bool("ready", false, "probe /readyz (serving: a verified primary for every database, not draining) instead of /healthz (the process runs)")
	addr := fs.String("addr", "", "http_listen of the proxy to probe (default: from --config, else 127.0.0.1:9930)")
	cfgPath := fs.String("config", "", "read http_listen from this configuration (TOML, or .ini for a pgbouncer.ini)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if code, done := parseArgs(fs, synopsis, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pauseproxy health: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	target := *addr
	if target == "" && *cfgPath != "" {
		cfg, err := loadForHealth(*cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "pauseproxy health: %v\n", err)
			return 1
		}
		if cfg.Proxy.HTTPListen == "" {
			fmt.Fprintf(stderr, "pauseproxy health: %s sets no http_listen: nothing to probe\n", *cfgPath)
			return 1
		}
		target = cfg.Proxy.HTTPListen
	}
	if target == "" {
		target = "127.0.0.1:9930"
	}
	path := "/healthz"
	if *ready {
		path = "/readyz"
	}
	url := "http://" + probeAddr(target) + path
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "pauseproxy health: %v\n", err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "pauseproxy health: GET %s: %v\n", url, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "pauseproxy health: GET %s: %s\n%s", url, resp.Status, body)
		return 1
	}
	fmt.Fprintf(stdout, "%s %s", path, body)
	if len(body) == 0 || body[len(body)-1] != '\n' {
		fmt.Fprintln(stdout)
	}
	return 0
}

// probeAddr turns a listening address into one to connect to: a wildcard
// host (":9930", "0.0.0.0:9930", "[::]:9930") is probed on loopback.
func probeAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0", "*":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// loadForHealth reads a configuration for its http_listen only: secrets
// need not be readable (the probe may run as another user, or without the
// environment the proxy has).
func loadForHealth(path string) (*config.Config, error) {
	if strings.HasSuffix(path, ".ini") {
		return config.LoadPgBouncerINIWith(path, config.LoadOptions{NoSecrets: true})
	}
	return config.LoadWith(path, config.LoadOptions{NoSecrets: true})
}
