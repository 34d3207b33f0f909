package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// postmaster is one run of the postgres server process, a child of the test
// process.
type postmaster struct {
	cmd     *exec.Cmd
	logFile string
	logFrom int64 // size of the log when this run started

	done chan struct{} // closed by wait once the process is reaped
	err  error         // result of cmd.Wait; read only after done is closed
}

// startPostmaster starts postgres in the foreground. Its parent-death signal
// is SIGQUIT, PostgreSQL's immediate shutdown: the postmaster tells its
// children to exit and releases shared memory, unlike SIGKILL, which would
// leave backends running until they notice ("Shutting Down the Server",
// PostgreSQL 15 docs section 19.5).
func startPostmaster(binDir, dataDir, logFile string) (*postmaster, error) {
	log, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pgtest: open server log: %w", err)
	}
	defer log.Close() // the child has its own descriptor
	info, err := log.Stat()
	if err != nil {
		return nil, fmt.Errorf("pgtest: server log: %w", err)
	}
	cmd := exec.Command(filepath.Join(binDir, "postgres"), "-D", dataDir)
	cmd.Env = childEnv()
	cmd.Dir = dataDir
	cmd.Stdout, cmd.Stderr = log, log
	if err := runAs(cmd, syscall.SIGQUIT); err != nil {
		return nil, fmt.Errorf("pgtest: start postgres: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("pgtest: start postgres: %w", err)
	}
	p := &postmaster{cmd: cmd, logFile: logFile, logFrom: info.Size(), done: make(chan struct{})}
	go p.wait()
	return p, nil
}

func (p *postmaster) wait() {
	p.err = p.cmd.Wait()
	if p.err == nil {
		p.err = errors.New("postgres exited")
	}
	close(p.done)
}

func (p *postmaster) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks for a fast shutdown and waits for it, killing the server if it
// has not exited after stopTimeout or when ctx ends.
func (p *postmaster) stop(ctx context.Context) error {
	if p.exited() {
		return nil
	}
	// Fast shutdown: SIGINT ("Shutting Down the Server", section 19.5).
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			<-p.done
			return nil
		}
		return fmt.Errorf("pgtest: stop postgres (pid %d): %w", p.cmd.Process.Pid, err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		p.kill()
		return fmt.Errorf("pgtest: stop postgres (pid %d): %w; killed it", p.cmd.Process.Pid, ctx.Err())
	case <-timer.C:
		p.kill()
		return fmt.Errorf("pgtest: postgres (pid %d) did not stop within %v; killed it\n%s", p.cmd.Process.Pid, stopTimeout, tail(p.logSince()))
	}
}

// kill kills the postmaster and its children with SIGKILL and waits until
// they are gone. Backends call setsid, so they are not in the postmaster's
// process group; we stop the postmaster first so it cannot fork while we
// collect its children, then kill them by pid.
func (p *postmaster) kill() error {
	if p.exited() {
		return nil
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	children := childPIDs(pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for _, c := range children {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	<-p.done
	// Orphans are reaped by init (or a subreaper), not by us; a backend
	// still holding the shared memory segment would make the next start
	// fail with "pre-existing shared memory block is still in use".
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range children {
		for alive(c) {
			if time.Now().After(deadline) {
				return fmt.Errorf("pgtest: kill postgres (pid %d): child %d still alive after 10s", pid, c)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// logSince returns what the server logged during this run.
func (p *postmaster) logSince() []byte {
	f, err := os.Open(p.logFile)
	if err != nil {
		return []byte(fmt.Sprintf("(cannot read server log: %v)", err))
	}
	defer f.Close()
	if _, err := f.Seek(p.logFrom, io.SeekStart); err != nil {
		return []byte(fmt.Sprintf("(cannot read server log: %v)", err))
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return []byte(fmt.Sprintf("(cannot read server log: %v)", err))
	}
	return b
}

// childPIDs lists the processes whose parent is pid, from /proc.
func childPIDs(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, ok := procStat(n); ok && ppid == pid {
			out = append(out, n)
		}
	}
	return out
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// procStat reads the parent pid and state of a process from
// /proc/<pid>/stat ("pid (comm) state ppid ...", proc(5)); comm may contain
// spaces and parentheses, so parse after the last ')'.
func procStat(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || len(b) < i+4 {
		return 0, 0, false
	}
	fields := bytes.Fields(b[i+1:])
	if len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(string(fields[1]))
	if err != nil {
		return 0, 0, false
	}
	return ppid, fields[0][0], true
}
