package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	var (
		serve   = flag.String("serve", "", "run one prototype (pair, single or epoll) until SIGINT or SIGTERM")
		listen  = flag.String("listen", "127.0.0.1:6432", "with -serve: client address")
		dsn     = flag.String("server", "", "with -serve: connection string of the server (trust auth)")
		pool    = flag.Int("pool", 20, "server connections")
		loops   = flag.Int("loops", 0, "epoll: event loops (0: GOMAXPROCS)")
		lock    = flag.Bool("lock", false, "epoll: each loop locks its OS thread")
		raw     = flag.Bool("raw", false, "epoll: non-blocking system calls as raw ones, a non-blocking epoll_wait first")
		measure = flag.Bool("measure", false, "start PostgreSQL, PgBouncer and every prototype, run pgbench against each, print the figures")
		rounds  = flag.Int("rounds", 3, "with -measure: rounds, each running every target in a rotated order")
		quick   = flag.Bool("quick", false, "with -measure: a tenth of the transactions, one round, for trying the harness")
		out     = flag.String("out", "", "with -measure: also write the report (Markdown) to this file")
		ppBin   = flag.String("pauseproxy", "", "with -measure: also run this pauseproxy binary (go build -o BIN ./cmd/pauseproxy), same pool and trust auth")
		only    = flag.String("targets", "", "with -measure: comma-separated prototype targets to run (default all); direct and pgbouncer always run")
	)
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	switch {
	case *serve != "":
		if err := runServe(*serve, config{Listen: *listen, ServerDSN: *dsn, Pool: *pool, Loops: *loops, LockThread: *lock, Raw: *raw}); err != nil {
			log.Fatal(err)
		}
	case *measure:
		opts := measureOptions{Rounds: *rounds, Pool: *pool, Out: *out, Quick: *quick, Pauseproxy: *ppBin}
		if *only != "" {
			opts.Targets = strings.Split(*only, ",")
		}
		if *quick {
			opts.Rounds = 1
		}
		if err := runMeasure(opts); err != nil {
			log.Fatal(err)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: ioproto -measure [-rounds N] | -serve pair|single|epoll -server DSN [-listen ADDR]")
		flag.PrintDefaults()
		os.Exit(2)
	}
}

// runServe serves until a signal; it prints "listening ADDR" once ready.
func runServe(kind string, cfg config) error {
	f, err := start(kind, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", f.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return f.Close()
}
