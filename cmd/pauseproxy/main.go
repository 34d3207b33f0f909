// Command pauseproxy is a PostgreSQL connection pooler that holds traffic,
// instead of failing it, while the primary changes.
//
//	pauseproxy --config FILE.toml          run the proxy
//	pauseproxy --pgbouncer-ini FILE.ini    run from an existing pgbouncer.ini
//	pauseproxy check-config FILE           validate a config (TOML or .ini)
//	pauseproxy convert FILE.ini            print the equivalent TOML
//	pauseproxy version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/pauseproxy/pauseproxy/internal/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "version":
			fmt.Fprintf(stdout, "pauseproxy %s\n", appVersion())
			return 0
		case "check-config":
			return checkConfig(args[1:], stdout, stderr)
		case "convert":
			return convert(args[1:], stdout, stderr)
		case "help":
			usage(stdout)
			return 0
		default:
			if code, ok := runCommand(args[0], args[1:], stdout, stderr); ok {
				return code
			}
			fmt.Fprintf(stderr, "pauseproxy: unknown command %q\n", args[0])
			usage(stderr)
			return 2
		}
	}
	fs := flag.NewFlagSet("pauseproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "TOML configuration file")
	iniPath := fs.String("pgbouncer-ini", "", "run from an existing pgbouncer.ini instead")
	fs.Usage = func() { usage(stderr) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if (*cfgPath == "") == (*iniPath == "") {
		fmt.Fprintln(stderr, "pauseproxy: give exactly one of --config FILE.toml or --pgbouncer-ini FILE.ini")
		return 2
	}
	load := func() (*config.Config, error) {
		if *iniPath != "" {
			return config.LoadPgBouncerINI(*iniPath)
		}
		return config.Load(*cfgPath)
	}
	return serve(load, stderr)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  pauseproxy --config FILE.toml         run the proxy
  pauseproxy --pgbouncer-ini FILE.ini   run from an existing pgbouncer.ini (and its auth_file)
  pauseproxy check-config FILE          validate a config (.toml, or .ini for pgbouncer.ini); exit 1 on problems
  pauseproxy convert FILE.ini           print the TOML equivalent of a pgbouncer.ini
  pauseproxy version
`)
	usageMore(w)
}

// loadAny loads a TOML config, or a pgbouncer.ini by its extension.
func loadAny(path string) (*config.Config, error) {
	if strings.HasSuffix(path, ".ini") {
		return config.LoadPgBouncerINI(path)
	}
	return config.Load(path)
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: pauseproxy check-config FILE")
		return 2
	}
	cfg, err := loadAny(args[0])
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	fmt.Fprintf(stdout, "%s: OK (%d databases)\n", args[0], len(cfg.Databases))
	return 0
}

func convert(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: pauseproxy convert FILE.ini")
		return 2
	}
	cfg, err := config.LoadPgBouncerINI(args[0])
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	fmt.Fprint(stdout, config.ToTOML(cfg))
	return 0
}

func printConfigError(w io.Writer, err error) {
	var ce *config.Error
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			fmt.Fprintln(w, p)
		}
		return
	}
	fmt.Fprintln(w, err)
}
