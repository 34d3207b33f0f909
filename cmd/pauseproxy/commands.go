package main

import "io"

// runCommand runs an operator command (switchover, exec, ...) by name; ok is
// false when no such command exists.
func runCommand(name string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	return 0, false
}

// usageMore prints the operator commands' usage.
func usageMore(w io.Writer) {}
