package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
)

// DefaultExecTimeout bounds exec by default.
const DefaultExecTimeout = 120 * time.Second

// commandStopGrace is how long a command that outlived the timeout has
// between SIGTERM and SIGKILL.
const commandStopGrace = 10 * time.Second

// ExecOptions configure Exec.
type ExecOptions struct {
	Options
	// Command is the program and its arguments (no shell).
	Command []string
	// The command's standard streams; nil is /dev/null (exec.Cmd's rule).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Exec runs a maintenance command with the database's traffic held on
// every proxy: pause, run the command, wait until every proxy has a
// verified writable primary again (the same node, another one, or another
// cluster after a config reload), retire the server connections so that
// each is dialed and verified anew, resume.
//
// The report's ExitCode is the command's exit status (128+signal when a
// signal ended it). A command that fails is not waited after: the proxies
// are reconnected and resumed at once, and their role-change engines hold
// traffic by themselves if the primary is gone. The error, a *StepError,
// names the step that failed.
func Exec(ctx context.Context, o ExecOptions) (*Report, error) {
	if len(o.Command) == 0 {
		return nil, errors.New("no command to run")
	}
	dc, err := o.prepare(ctx, "exec", DefaultExecTimeout)
	if err != nil {
		return nil, err
	}
	f := fleet(o.Proxies)
	defer f.close()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p := newPipeline("exec "+o.Database, o.Log)
	rep := &Report{Database: o.Database, Proxies: f.names()}
	err = o.run(ctx, p, f, dc, rep)
	if uerr := p.unwind(); uerr != nil {
		err = errors.Join(err, uerr)
	}
	rep.Steps = p.steps
	return rep, err
}

func (o *ExecOptions) run(ctx context.Context, p *pipeline, f fleet, dc *config.Database, rep *Report) error {
	db := o.Database
	if err := lockStep(ctx, p, dc, lockScope(ctx, dc, nil)); err != nil {
		return err
	}

	var before []State
	if err := p.step(ctx, "proxies", func(ctx context.Context) error {
		var err error
		before, err = checkProxies(ctx, f, db, false)
		return err
	}); err != nil {
		return err
	}
	rep.From = before[0].Verified

	heldSince := time.Now()
	// From here traffic is held: bounded so that no held client reaches
	// hold_timeout (holdbudget.go).
	hctx, hcancel := o.heldContext(ctx)
	defer hcancel()
	err := o.runHeld(hctx, p, f, db, rep)
	if err == nil {
		rep.Held = time.Since(heldSince)
	}
	return explainHeld(hctx, err)
}

// runHeld is the held phase of exec: pause, command, wait, reconnect,
// resume.
func (o *ExecOptions) runHeld(ctx context.Context, p *pipeline, f fleet, db string, rep *Report) error {
	resume, err := pauseStep(ctx, p, f, db, o.DrainTimeout)
	if err != nil {
		return err
	}

	cmdErr := p.step(ctx, "command", func(ctx context.Context) error {
		o.Log.Info("command: running", slog.String("command", strings.Join(o.Command, " ")))
		rep.ExitCode = o.runCommand(ctx)
		if rep.ExitCode != 0 {
			return fmt.Errorf("%s exited with status %d", o.Command[0], rep.ExitCode)
		}
		return nil
	})

	if cmdErr == nil {
		var verified []string
		if err := p.step(ctx, "wait", func(ctx context.Context) error {
			var err error
			// A verified primary that is the one discovery names now: a
			// stale verification of a node that stopped being primary
			// while the command ran does not count.
			verified, err = f.waitAll(ctx, db, func(s State) bool {
				return s.Verified != "" && (s.Primary == "" || s.Verified == s.Primary)
			}, nil)
			return err
		}); err != nil {
			return err
		}
		rep.To = verified[0]
	}

	// While paused no server connection is in use: RECONNECT closes them
	// all, so that after a restart in place no transaction meets a
	// connection the restart broke, and each new one is verified writable
	// when dialed.
	if err := p.step(ctx, "reconnect", func(ctx context.Context) error {
		return f.reconnect(ctx, db)
	}); err != nil {
		return errors.Join(cmdErr, err)
	}
	if err := resumeStep(ctx, p, f, db, resume); err != nil {
		return errors.Join(cmdErr, err)
	}
	return cmdErr
}

// runCommand runs the command to its end and returns its exit status: 127
// when it cannot start (as a shell says), 128+signal when a signal ended
// it. When ctx ends first the command gets SIGTERM, then SIGKILL after
// commandStopGrace.
func (o *ExecOptions) runCommand(ctx context.Context) int {
	cmd := exec.CommandContext(ctx, o.Command[0], o.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = commandStopGrace
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		if c := ee.ExitCode(); c > 0 {
			return c
		}
		return 1
	default:
		o.Log.Error("command: cannot run", slog.Any("err", err))
		return 127
	}
}
