// Command pauseproxy is a PostgreSQL connection pooler that holds traffic,
// instead of failing it, while the primary changes.
//
//	pauseproxy FILE.toml | FILE.ini        run the proxy (.ini: a pgbouncer.ini)
//	pauseproxy --config FILE.toml          run the proxy
//	pauseproxy --pgbouncer-ini FILE.ini    run from an existing pgbouncer.ini
//	pauseproxy check-config FILE           validate a config (TOML or .ini)
//	pauseproxy convert FILE.ini            print the equivalent TOML
//	pauseproxy health [--ready]            probe /healthz (/readyz): exit 0 or 1
//	pauseproxy version                     (also -V, --version)
//	pauseproxy help [COMMAND]              (also -h, --help; COMMAND --help)
//
// Help goes to stdout with exit status 0; a wrong command line gets the
// usage on stderr and exit status 2; a bad configuration exit status 1.
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

// commands are the subcommands by name. serveCmd runs when the first
// argument names none of them.
var commands map[string]func(args []string, stdout, stderr io.Writer) int

func init() {
	// Built here rather than in the declaration: help refers back to
	// commands.
	commands = map[string]func(args []string, stdout, stderr io.Writer) int{
		"check-config": checkConfig,
		"convert":      convert,
		"version":      versionCmd,
		"help":         helpCmd,
		"switchover":   switchoverCmd,
		"exec":         execCmd,
		"ctl":          ctlCmd,
		"health":       healthCmd,
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			return helpCmd(args[1:], stdout, stderr)
		case "-V", "-version", "--version":
			return versionCmd(args[1:], stdout, stderr)
		}
		if cmd, ok := commands[args[0]]; ok {
			return cmd(args[1:], stdout, stderr)
		}
	}
	return serveCmd(args, stdout, stderr)
}

// serveCmd runs the proxy from --config FILE.toml, --pgbouncer-ini
// FILE.ini, or a file named as the argument, as PgBouncer's systemd unit
// does (`pgbouncer /etc/pgbouncer/pgbouncer.ini`): a name ending in .ini is
// a pgbouncer.ini, anything else TOML. Flags may come before or after the
// file.
func serveCmd(args []string, stdout, stderr io.Writer) int {
	const synopsis = "pauseproxy [flags] FILE.toml|FILE.ini\n       pauseproxy [flags] --config FILE.toml | --pgbouncer-ini FILE.ini"
	fs := newFlagSet("", stderr)
	cfgPath := fs.String("config", "", "TOML configuration file")
	iniPath := fs.String("pgbouncer-ini", "", "run from an existing pgbouncer.ini (and its auth_file) instead")
	allowRoot := fs.Bool("allow-root", false, "serve even when started as root (also allow_root = true in [proxy]); refused otherwise")
	showVersion := fs.Bool("version", false, "print the version and exit (also -V)")
	fs.BoolVar(showVersion, "V", false, "print the version and exit")
	files, code, done := parseInterleaved(fs, synopsis, args, stdout, stderr)
	if done {
		return code
	}
	if *showVersion {
		return versionCmd(nil, stdout, stderr)
	}
	switch {
	case len(files) > 0 && !looksLikeFile(files[0]):
		fmt.Fprintf(stderr, "pauseproxy: unknown command %q (a configuration file is named by a path: ./%[1]s)\n", files[0])
		usage(stderr)
		return 2
	case len(files) > 1:
		fmt.Fprintf(stderr, "pauseproxy: unexpected argument %q after %q\n", files[1], files[0])
		return 2
	}
	given := 0
	for _, s := range []string{*cfgPath, *iniPath} {
		if s != "" {
			given++
		}
	}
	if given+len(files) != 1 {
		fmt.Fprintln(stderr, "pauseproxy: give exactly one configuration: FILE.toml, FILE.ini, --config FILE.toml or --pgbouncer-ini FILE.ini")
		usage(stderr)
		return 2
	}
	load := func() (*config.Config, error) {
		switch {
		case *iniPath != "":
			return config.LoadPgBouncerINI(*iniPath)
		case *cfgPath != "":
			return config.Load(*cfgPath)
		}
		return loadAny(files[0])
	}
	return serve(load, *allowRoot, stderr)
}

// looksLikeFile tells a configuration file from a mistyped command: a path
// with a directory or an extension, or a file that exists.
func looksLikeFile(arg string) bool {
	if strings.ContainsAny(arg, "/.") {
		return true
	}
	_, err := os.Stat(arg)
	return err == nil
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  pauseproxy FILE.toml | FILE.ini       run the proxy (a name ending in .ini is a pgbouncer.ini, as in
                                        PgBouncer's unit: pauseproxy /etc/pgbouncer/pgbouncer.ini)
  pauseproxy --config FILE.toml         run the proxy
  pauseproxy --pgbouncer-ini FILE.ini   run from an existing pgbouncer.ini (and its auth_file)
      --allow-root                      serve even as root (or allow_root = true in [proxy]); refused otherwise
  pauseproxy check-config [--no-secrets] FILE
                                        validate a config (.toml, or .ini for pgbouncer.ini); exit 1 on problems;
                                        --no-secrets: secrets it names need not exist (warnings), for CI
  pauseproxy convert FILE.ini           print the TOML equivalent of a pgbouncer.ini
  pauseproxy health [--ready] [--addr HOST:PORT | --config FILE] [--timeout 3s]
                                        GET /healthz (--ready: /readyz) on http_listen; exit 0 on 200, 1 otherwise
                                        (a distroless image's HEALTHCHECK)
  pauseproxy version                    print the version (also -V, --version)
  pauseproxy help [COMMAND]             this text, or a command's (also -h, --help, COMMAND --help)
`)
	usageMore(w)
}

// helpCmd is help [COMMAND]: the overview, or COMMAND's own usage.
func helpCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || isHelp(args[0]) {
		usage(stdout)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "pauseproxy help: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	return cmd([]string{"--help"}, stdout, stderr)
}

func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", stderr)
	if code, done := parseArgs(fs, "pauseproxy version (also -V, --version)", args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pauseproxy version: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	fmt.Fprintf(stdout, "pauseproxy %s\n", appVersion())
	return 0
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// newFlagSet returns the flag set of a command ("" for the proxy itself).
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(strings.TrimSpace("pauseproxy "+name), flag.ContinueOnError)
	fs.SetOutput(stderr)
	// parseArgs prints the usage itself, to stdout or stderr.
	fs.Usage = func() {}
	return fs
}

// parseArgs parses args into fs. When it is done, the command ends with
// code: a request for help ("help" as the first argument, -h, --help)
// prints synopsis and the flags to stdout, code 0; a wrong flag prints the
// problem and the same to stderr, code 2.
func parseArgs(fs *flag.FlagSet, synopsis string, args []string, stdout, stderr io.Writer) (code int, done bool) {
	printUsage := func(w io.Writer) {
		fmt.Fprintf(w, "usage: %s\n", synopsis)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(w, "flags:")
			fs.SetOutput(w)
			fs.PrintDefaults()
			fs.SetOutput(stderr)
		}
	}
	if len(args) > 0 && args[0] == "help" {
		printUsage(stdout)
		return 0, true
	}
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout)
		return 0, true
	case err != nil:
		printUsage(stderr)
		return 2, true
	}
	return 0, false
}

// parseInterleaved is parseArgs for a command whose positional arguments
// may come before, between or after its flags (Go's flag package stops at
// the first one): it parses again after each, and returns them.
func parseInterleaved(fs *flag.FlagSet, synopsis string, args []string, stdout, stderr io.Writer) (positional []string, code int, done bool) {
	for rest := args; ; {
		if code, done := parseArgs(fs, synopsis, rest, stdout, stderr); done {
			return nil, code, true
		}
		if fs.NArg() == 0 {
			return positional, 0, false
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
}

// loadAny loads a TOML config, or a pgbouncer.ini by its extension.
func loadAny(path string) (*config.Config, error) {
	return loadAnyWith(path, config.LoadOptions{})
}

func loadAnyWith(path string, o config.LoadOptions) (*config.Config, error) {
	if strings.HasSuffix(path, ".ini") {
		return config.LoadPgBouncerINIWith(path, o)
	}
	return config.LoadWith(path, o)
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	const synopsis = "pauseproxy check-config [--no-secrets] FILE (.toml, or .ini for a pgbouncer.ini)"
	fs := newFlagSet("check-config", stderr)
	noSecrets := fs.Bool("no-secrets", false, "do not require the secrets the file names (*_env variables, *_file secrets, auth_file, TLS private keys): a missing one is a warning (for CI)")
	files, code, done := parseInterleaved(fs, synopsis, args, stdout, stderr)
	if done {
		return code
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "usage: %s\n", synopsis)
		return 2
	}
	path := files[0]
	cfg, err := loadAnyWith(path, config.LoadOptions{NoSecrets: *noSecrets})
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	fmt.Fprintf(stdout, "%s: OK (%d databases)\n", path, len(cfg.Databases))
	return 0
}

func convert(args []string, stdout, stderr io.Writer) int {
	const synopsis = "pauseproxy convert FILE.ini (prints the TOML equivalent of a pgbouncer.ini)"
	fs := newFlagSet("convert", stderr)
	if code, done := parseArgs(fs, synopsis, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "usage: %s\n", synopsis)
		return 2
	}
	cfg, err := config.LoadPgBouncerINI(fs.Arg(0))
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
