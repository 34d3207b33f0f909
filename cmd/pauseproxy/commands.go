package main

import (
	"fmt"
	"io"
)

// usageMore prints the operator commands' usage.
func usageMore(w io.Writer) {
	fmt.Fprint(w, `operator commands (--config defaults to $PAUSEPROXY_CONFIG or /etc/pauseproxy/pauseproxy.toml;
they pause this proxy and its peers through the admin console, as the first of admin_users):
  pauseproxy switchover [--config FILE] [--database NAME] [--candidate MEMBER] [--timeout 60s]
                        [--max-lag BYTES] [--drain-timeout DUR]
                                        move the primary to a replica with traffic held (Patroni or Consul discovery)
  pauseproxy exec [--config FILE] [--database NAME] [--timeout 120s] [--drain-timeout DUR] -- COMMAND [ARG...]
                                        run a maintenance command with traffic held; exit with its status
  pauseproxy ctl pause|resume|status [--config FILE] [--database NAME] [--all] [--timeout DUR] [--expire DUR]
                                        pause, resume or show this proxy (--all: and its peers)
`)
}

// runCommand runs an operator command (switchover, exec, ...) by name; ok is
// false when no such command exists.
func runCommand(name string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	switch name {
	case "switchover":
		return switchoverCmd(args, stdout, stderr), true
	case "exec":
		return execCmd(args, stdout, stderr), true
	case "ctl":
		return ctlCmd(args, stdout, stderr), true
	}
	return 0, false
}
