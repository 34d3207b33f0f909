package router

// Unit tests of the session core without PostgreSQL: a client and a
// scripted server, both over net.Pipe, so a change to the core is checked
// in milliseconds. The real-PostgreSQL suites (internal/proxy,
// internal/fidelity, internal/failover) check the rest.

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// fakeServer answers simple queries as PostgreSQL would for what the tests
// send: BEGIN, COMMIT, ROLLBACK and anything else (one CommandComplete),
// keeping each connection's transaction status. It records every query.
type fakeServer struct {
	mu      sync.Mutex
	queries []string
	conns   []net.Conn
	// refuse answers this many runs of a query with 25006 (a demoted
	// primary's read_only_sql_transaction), as a batch the proxy may run
	// again elsewhere.
	refuse map[string]int
	// beforeRefuse runs before each refusal is sent.
	beforeRefuse func()
	// fatal ends the connection running a query with a FATAL of this
	// SQLSTATE, once per entry.
	fatal map[string]string
	// lateReady answers a query with 57014 at once and its
	// ReadyForQuery only this much later.
	lateReady map[string]time.Duration
}

func (f *fakeServer) dial(ctx context.Context, t pool.Target) (*pool.Server, error) {
	proxySide, serverSide := net.Pipe()
	f.mu.Lock()
	f.conns = append(f.conns, serverSide)
	f.mu.Unlock()
	go f.serve(serverSide)
	return &pool.Server{Conn: proxySide, PID: 4242, SecretKey: []byte{1, 2, 3, 4}, Params: map[string]string{
		"server_version": "15.0", "client_encoding": "UTF8", "DateStyle": "ISO, MDY",
		"TimeZone": "UTC", "standard_conforming_strings": "on", "application_name": "",
	}, Network: "tcp", Address: "127.0.0.1:1"}, nil
}

func (f *fakeServer) serve(c net.Conn) {
	defer c.Close()
	rd := wire.NewReader(c, 1<<20)
	status := byte(wire.TxIdle)
	for {
		m, err := rd.ReadMessage()
		if err != nil {
			return
		}
		switch m.Type() {
		case wire.MsgTerminate:
			return
		case wire.MsgQuery:
			q := strings.TrimSuffix(string(m.Body()), "\x00")
			f.mu.Lock()
			f.queries = append(f.queries, q)
			if d, ok := f.lateReady[q]; ok {
				f.mu.Unlock()
				if _, err := c.Write(wire.AppendError(nil, wire.SeverityError, "57014", "canceling statement due to statement timeout")); err != nil {
					return
				}
				time.Sleep(d)
				if _, err := c.Write(wire.AppendReadyForQuery(nil, status)); err != nil {
					return
				}
				continue
			}
			if code, ok := f.fatal[q]; ok {
				delete(f.fatal, q)
				f.mu.Unlock()
				c.Write(wire.AppendError(nil, wire.SeverityFatal, code, "terminating connection ("+code+")"))
				return
			}
			if f.refuse[q] > 0 {
				f.refuse[q]--
				f.mu.Unlock()
				if f.beforeRefuse != nil {
					f.beforeRefuse()
				}
				out := wire.AppendError(nil, wire.SeverityError, "25006", "cannot execute in a read-only transaction")
				if _, err := c.Write(wire.AppendReadyForQuery(out, status)); err != nil {
					return
				}
				continue
			}
			f.mu.Unlock()
			tag := "SELECT 1"
			switch strings.ToUpper(q) {
			case "BEGIN":
				tag, status = "BEGIN", wire.TxActive
			case "COMMIT", "ROLLBACK":
				tag, status = strings.ToUpper(q), wire.TxIdle
			}
			out, start := wire.AppendHeader(nil, wire.MsgCommandComplete)
			out = append(out, tag...)
			out = append(out, 0)
			out = wire.FinishMessage(out, start)
			if _, err := c.Write(wire.AppendReadyForQuery(out, status)); err != nil {
				return
			}
		}
	}
}

func (f *fakeServer) saw(q string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range f.queries {
		if x == q {
			return true
		}
	}
	return false
}

func (f *fakeServer) count(q string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, x := range f.queries {
		if x == q {
			n++
		}
	}
	return n
}

func (f *fakeServer) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
}

// testClient is the client end of a session: what it receives arrives on
// msgs, in order.
type testClient struct {
	conn net.Conn
	msgs chan wire.Message
	sess *Session
}

func (c *testClient) send(t *testing.T, b []byte) {
	t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.conn.Write(b); err != nil {
		t.Fatalf("client write: %v", err)
	}
}

// next returns the next message of type typ (any type for 0), skipping
// others; it fails the test after a generous deadline.
func (c *testClient) next(t *testing.T, typ byte) wire.Message {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				t.Fatalf("connection closed while waiting for %q", typ)
			}
			if typ == 0 || m.Type() == typ {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q message", typ)
		}
	}
}

// harness is a router serving database "db" from a fakeServer.
type harness struct {
	r    *Router
	fake *fakeServer
	db   *Database
}

func newHarness(t *testing.T, proxyLines string) *harness {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "pauseproxy.toml")
	body := "[proxy]\nlisten_addr = \"127.0.0.1\"\nlisten_port = 6432\nunix_socket_dir = \"\"\nauth_type = \"trust\"\n" +
		proxyLines + "\n[databases.db]\nhost = \"127.0.0.1\"\nport = 1\nuser = \"u\"\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{r: New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))), fake: &fakeServer{}}
	h.r.dialHook = h.fake.dial
	h.db, _ = h.r.Database("db")
	t.Cleanup(func() {
		h.r.Close()
		h.fake.close()
	})
	return h
}

// connect logs a client in and runs its session until the test ends.
func (h *harness) connect(t *testing.T) *testClient {
	t.Helper()
	return h.connectWith(t)
}

// connectWith is connect with more startup parameters.
func (h *harness) connectWith(t *testing.T, extra ...wire.Param) *testClient {
	t.Helper()
	clientSide, proxySide := net.Pipe()
	c := &testClient{conn: clientSide, msgs: make(chan wire.Message, 1024)}
	go func() {
		defer close(c.msgs)
		rd := wire.NewReader(clientSide, 1<<20)
		for {
			m, err := rd.ReadMessage()
			if err != nil {
				return
			}
			c.msgs <- append(wire.Message(nil), m...)
		}
	}()
	st := &wire.Startup{Kind: wire.StartupMessage, Params: append([]wire.Param{{Name: "user", Value: "u"}, {Name: "database", Value: "db"}}, extra...)}
	sess, err := h.r.Start(context.Background(), Login{
		Conn: proxySide, Reader: wire.NewReader(proxySide, 1<<20), Startup: st, DB: h.db, User: "u", ServerUser: "u",
	})
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	c.sess = sess
	c.next(t, wire.MsgReadyForQuery)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sess.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		clientSide.Close()
		<-done
	})
	return c
}

func (c *testClient) phase() phase {
	c.sess.mu.Lock()
	defer c.sess.mu.Unlock()
	return c.sess.phase
}

func waitPhase(t *testing.T, c *testClient, p phase) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.phase() != p {
		if time.Now().After(deadline) {
			t.Fatalf("phase %v, want %v", c.phase(), p)
		}
		time.Sleep(time.Millisecond)
	}
}

func query(sql string) []byte { return wire.AppendQuery(nil, sql) }

func TestPhasesOfATransaction(t *testing.T) {
	h := newHarness(t, "pool_mode = \"transaction\"\ndefault_pool_size = 1")
	c := h.connect(t)
	if c.phase() != phaseIdle {
		t.Fatalf("after login: %v", c.phase())
	}
	c.send(t, query("BEGIN"))
	if st, _ := wire.ReadyForQueryStatus(c.next(t, wire.MsgReadyForQuery)); st != wire.TxActive {
		t.Fatalf("BEGIN: status %q", st)
	}
	waitPhase(t, c, phaseActive)
	c.send(t, query("SELECT 1"))
	c.next(t, wire.MsgReadyForQuery)
	if c.phase() != phaseActive {
		t.Fatalf("inside the transaction: %v", c.phase())
	}
	c.send(t, query("COMMIT"))
	if st, _ := wire.ReadyForQueryStatus(c.next(t, wire.MsgReadyForQuery)); st != wire.TxIdle {
		t.Fatalf("COMMIT: status %q", st)
	}
	// The connection went back before the client heard it may go on.
	if c.phase() != phaseIdle {
		t.Fatalf("after COMMIT: %v", c.phase())
	}
	if info := c.sess.Info(); info.Server != nil || info.State != "idle" {
		t.Fatalf("after COMMIT: server %v, state %q", info.Server, info.State)
	}
}

func TestIdleTransactionTimeoutUnit(t *testing.T) {
	h := newHarness(t, "idle_transaction_timeout = \"200ms\"")
	c := h.connect(t)
	c.send(t, query("BEGIN"))
	c.next(t, wire.MsgReadyForQuery)
	c.send(t, query("SELECT 1"))
	c.next(t, wire.MsgReadyForQuery)
	f, err := wire.ParseError(c.next(t, wire.MsgErrorResponse))
	if err != nil || string(f.Code) != "25P03" || string(f.Severity) != "FATAL" {
		t.Fatalf("want FATAL 25P03, got %+v %v", f, err)
	}
}

func TestCancelEndsTheWait(t *testing.T) {
	h := newHarness(t, "default_pool_size = 1")
	a := h.connect(t)
	a.send(t, query("BEGIN"))
	a.next(t, wire.MsgReadyForQuery)
	b := h.connect(t)
	b.send(t, query("SELECT 'never'"))
	waitPhase(t, b, phaseWaiting)
	h.r.Cancel(b.sess.Key)
	f, err := wire.ParseError(b.next(t, wire.MsgErrorResponse))
	if err != nil || string(f.Code) != "57014" {
		t.Fatalf("want 57014, got %+v %v", f, err)
	}
	b.next(t, wire.MsgReadyForQuery)
	waitPhase(t, b, phaseIdle)
	a.send(t, query("COMMIT"))
	a.next(t, wire.MsgReadyForQuery)
	// b goes on; what it gave up never reached the server.
	b.send(t, query("SELECT 2"))
	b.next(t, wire.MsgReadyForQuery)
	if h.fake.saw("SELECT 'never'") {
		t.Fatal("the cancelled statement reached the server")
	}
	if !h.fake.saw("SELECT 2") {
		t.Fatal("the next statement did not run")
	}
}

func TestReleaseRule(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     config.PoolMode
		pending  int
		unsynced int
		owed     bool
		status   byte
		want     bool
	}{
		{name: "all answered, idle", mode: config.PoolModeTransaction, status: wire.TxIdle, want: true},
		{name: "inside a transaction", mode: config.PoolModeTransaction, status: wire.TxActive},
		{name: "failed transaction", mode: config.PoolModeTransaction, status: wire.TxFailed},
		{name: "another Sync pending", mode: config.PoolModeTransaction, pending: 1, status: wire.TxIdle},
		{name: "messages sent since", mode: config.PoolModeTransaction, unsynced: 2, status: wire.TxIdle},
		{name: "an answer the proxy owes", mode: config.PoolModeTransaction, owed: true, status: wire.TxIdle},
		{name: "session mode", mode: config.PoolModeSession, status: wire.TxIdle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Session{mode: tc.mode, bnd: binding{pending: tc.pending, unsynced: tc.unsynced}}
			if tc.owed {
				s.exps.push(exp{kind: expSynthParse})
			}
			if got := s.releasableLocked(tc.status); got != tc.want {
				t.Fatalf("releasable = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSessionModeLoginDuringPause(t *testing.T) {
	// A held database (PAUSE, a role change) does not hold a session-mode
	// login: the client logs in, and its first statement waits.
	h := newHarness(t, "pool_mode = \"session\"\ndefault_pool_size = 2")
	a := h.connect(t)
	if a.phase() != phaseActive {
		t.Fatalf("session-mode login: %v, want active (bound at login)", a.phase())
	}
	h.db.Hold("pause")
	b := h.connect(t) // fails the test if the login does not complete
	if b.phase() != phaseIdle {
		t.Fatalf("login while held: %v, want idle (not bound)", b.phase())
	}
	b.send(t, query("SELECT 1"))
	waitPhase(t, b, phaseWaiting)
	h.db.Unhold("pause")
	b.next(t, wire.MsgReadyForQuery)
	if b.phase() != phaseActive {
		t.Fatalf("session mode after the first statement: %v, want active", b.phase())
	}
}

func TestRefusedBatchRunsAgain(t *testing.T) {
	// A server refusing an implicit transaction as a demoted primary does:
	// the batch runs again on another server connection, and the client
	// sees only the second answer.
	h := newHarness(t, "")
	h.fake.refuse = map[string]int{"SELECT 'again'": 1}
	c := h.connect(t)
	c.send(t, query("SELECT 'again'"))
	for {
		m := c.next(t, 0)
		if m.Type() == wire.MsgErrorResponse {
			f, _ := wire.ParseError(m)
			t.Fatalf("the client saw the refusal: %s %s", f.Code, f.Message)
		}
		if m.Type() == wire.MsgReadyForQuery {
			break
		}
	}
	if got := h.db.stats.Retries.Load(); got != 1 {
		t.Fatalf("retries = %d, want 1", got)
	}
	waitPhase(t, c, phaseIdle)
	// The session goes on as before.
	c.send(t, query("SELECT 3"))
	c.next(t, wire.MsgReadyForQuery)
}

func TestSessionFatals(t *testing.T) {
	// A FATAL that ends one session by its own doing is that connection's
	// death: no trouble signal for the role-change engine. One that comes
	// as the batch arrives at a connection idle_session_timeout ends
	// (57P05) ran nothing: the batch runs again elsewhere. A protocol
	// violation (08P01) is the batch's own doing: the client gets it.
	for _, tc := range []struct {
		code    string
		retried bool
		trouble bool
	}{
		{"57P05", true, false},
		{"08P01", false, false},
		{"25P03", false, false},
		{"XX000", false, true}, // anything else: the server is in question
	} {
		t.Run(tc.code, func(t *testing.T) {
			h := newHarness(t, "")
			h.fake.fatal = map[string]string{"SELECT 'x'": tc.code}
			c := h.connect(t)
			c.send(t, query("SELECT 'x'"))
			var sawErr bool
			for {
				m := c.next(t, 0)
				if m.Type() == wire.MsgErrorResponse {
					sawErr = true
					if f, _ := wire.ParseError(m); !strings.Contains(string(f.Message), tc.code) {
						t.Errorf("the error does not give the server's reason: %s", f.Message)
					}
				}
				if m.Type() == wire.MsgReadyForQuery {
					break
				}
			}
			if sawErr == tc.retried {
				t.Errorf("client saw an error: %v, want %v", sawErr, !tc.retried)
			}
			if got := h.db.stats.Retries.Load(); (got == 1) != tc.retried {
				t.Errorf("retries = %d", got)
			}
			// The session goes on.
			c.send(t, query("SELECT 3"))
			c.next(t, wire.MsgReadyForQuery)
			// The signal follows the client's answer: wait for it where
			// it is due; by now it would have come where it is not.
			deadline := time.Now().Add(10 * time.Second)
			for tc.trouble && len(h.db.trouble) == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if got := len(h.db.trouble) == 1; got != tc.trouble {
				t.Errorf("trouble signalled: %v, want %v", got, tc.trouble)
			}
		})
	}
}

func TestNothingAfterTerminate(t *testing.T) {
	// node-postgres sends Terminate as soon as it reads an ErrorResponse,
	// before the ReadyForQuery behind it: the proxy closes that server
	// connection, and must tell the client nothing more (it took a late
	// "server connection lost" for an unhandled error and crashed).
	h := newHarness(t, "")
	h.fake.lateReady = map[string]time.Duration{"SELECT 'timed out'": 300 * time.Millisecond}
	// A loaded machine: end is slow to close the client's connection
	// after the server's.
	testHookBeforeClientClose = func() { time.Sleep(100 * time.Millisecond) }
	t.Cleanup(func() { testHookBeforeClientClose = nil })
	c := h.connect(t)
	c.send(t, query("SELECT 'timed out'"))
	c.next(t, wire.MsgErrorResponse)
	c.send(t, []byte{wire.MsgTerminate, 0, 0, 0, 4})
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				return
			}
			if m.Type() == wire.MsgErrorResponse {
				f, _ := wire.ParseError(m)
				t.Fatalf("after Terminate the client got %s %s", f.Code, f.Message)
			}
		case <-deadline:
			t.Fatal("the client's connection was not closed after Terminate")
		}
	}
}

func TestClientLeavesDuringRetry(t *testing.T) {
	// The batch's retry waits in a hold; the client leaving ends the
	// session at once, not at hold_timeout, and nothing runs for it.
	h := newHarness(t, "hold_timeout = \"10m\"")
	h.fake.refuse = map[string]int{"SELECT 'gone'": 1}
	h.fake.beforeRefuse = func() { h.db.Hold("test") }
	c := h.connect(t)
	c.send(t, query("SELECT 'gone'"))
	waitPhase(t, c, phaseWaiting) // the retry waits in the hold
	c.conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h.r.mu.Lock()
		_, live := h.r.sessions[c.sess.ID]
		h.r.mu.Unlock()
		if !live {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the session outlived its client while its retry waited")
		}
		time.Sleep(time.Millisecond)
	}
	h.db.Unhold("test")
	if n := h.fake.count("SELECT 'gone'"); n != 1 {
		t.Fatalf("the refused batch reached a server %d times, want 1", n)
	}
}

func TestParamSyncAcrossClients(t *testing.T) {
	// One server connection serves clients in turn: it is SET only when
	// the next client expects other values than the connection has, and
	// a client with the values already in place costs no SET at all.
	h := newHarness(t, "default_pool_size = 1")
	sets := func() int {
		h.fake.mu.Lock()
		defer h.fake.mu.Unlock()
		n := 0
		for _, q := range h.fake.queries {
			if strings.Contains(q, "set_config(") {
				n++
			}
		}
		return n
	}
	run := func(c *testClient) {
		t.Helper()
		c.send(t, query("SELECT 1"))
		c.next(t, wire.MsgReadyForQuery)
		waitPhase(t, c, phaseIdle)
	}
	a1 := h.connectWith(t, wire.Param{Name: "application_name", Value: "a"})
	a2 := h.connectWith(t, wire.Param{Name: "application_name", Value: "a"})
	b := h.connectWith(t, wire.Param{Name: "application_name", Value: "b"})
	run(a1)
	first := sets()
	if first != 1 {
		t.Fatalf("%d SETs for the first client, want 1: %q", first, h.fake.queries)
	}
	run(a2) // the same values: nothing to set
	run(a1)
	if got := sets(); got != first {
		t.Fatalf("clients with the values in place caused SETs: %q", h.fake.queries)
	}
	run(b) // another value: SET
	if got := sets(); got != first+1 {
		t.Fatalf("%d SETs after a client with another value, want %d: %q", got, first+1, h.fake.queries)
	}
	run(a2) // back: SET again
	if got := sets(); got != first+2 {
		t.Fatalf("%d SETs after switching back, want %d: %q", got, first+2, h.fake.queries)
	}
	if q := h.fake.queries[len(h.fake.queries)-2]; !strings.Contains(q, "'a'") {
		t.Fatalf("last SET %q, want application_name back to a", q)
	}
}
