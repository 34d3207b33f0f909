package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// config is what every forwarder needs.
type config struct {
	// Listen is the client address, host:port ("127.0.0.1:0" for any port).
	Listen string
	// ServerDSN logs the pool's server connections in (trust auth).
	ServerDSN string
	// Pool is the number of server connections.
	Pool int
	// Loops is the number of event loops of epoll; 0 means GOMAXPROCS.
	Loops int
	// LockThread makes each event loop lock its OS thread.
	LockThread bool
	// Raw makes each event loop's non-blocking system calls raw ones.
	Raw bool
}

// forwarder is a running prototype.
type forwarder interface {
	// Addr is the address clients connect to.
	Addr() string
	// Close stops accepting, closes every client and server connection
	// and returns once every goroutine the forwarder started has ended.
	// Safe to call twice.
	Close() error
}

// kinds are the prototypes, by name.
var kinds = []string{"pair", "single", "epoll"}

// start starts the prototype kind.
func start(kind string, cfg config) (forwarder, error) {
	if cfg.Pool < 1 {
		return nil, fmt.Errorf("pool size %d: want at least 1", cfg.Pool)
	}
	conns, params, err := loginServers(context.Background(), cfg.ServerDSN, cfg.Pool)
	if err != nil {
		return nil, err
	}
	var f forwarder
	switch kind {
	case "pair":
		f, err = startPair(cfg, conns, greeting(params))
	case "single":
		f, err = startSingle(cfg, conns, greeting(params))
	case "epoll":
		f, err = startEpoll(cfg, conns, greeting(params))
	default:
		err = fmt.Errorf("unknown prototype %q: want one of %s", kind, strings.Join(kinds, ", "))
	}
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		return nil, err
	}
	return f, nil
}

// loginServers logs n server connections in with pgconn and takes their
// sockets (pgconn.Hijack), idle, ready for a query. params are the
// ParameterStatus values of the first login, sorted by name.
func loginServers(ctx context.Context, dsn string, n int) ([]net.Conn, [][2]string, error) {
	var conns []net.Conn
	var params [][2]string
	for i := range n {
		pc, err := pgconn.Connect(ctx, dsn)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, nil, fmt.Errorf("log server connection %d in: %w", i+1, err)
		}
		h, err := pc.Hijack()
		if err != nil {
			pc.Close(ctx)
			for _, c := range conns {
				c.Close()
			}
			return nil, nil, fmt.Errorf("take server connection %d: %w", i+1, err)
		}
		if i == 0 {
			for k, v := range h.ParameterStatuses {
				params = append(params, [2]string{k, v})
			}
			slices.SortFunc(params, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
		}
		conns = append(conns, h.Conn)
	}
	return conns, params, nil
}
