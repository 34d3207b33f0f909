package pool

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Handler receives what a server sends while a session has the connection
// bound. Both methods run on the connection's reader goroutine.
type Handler interface {
	// ServerMessage handles one message. more reports that another complete
	// message is already buffered (so the handler may delay flushing). It
	// returns true to end the binding: the connection then goes back to the
	// pool (or is closed when it must not be reused). m is valid only during
	// the call.
	ServerMessage(c *Conn, m wire.Message, more bool) (release bool)
	// ServerFailed reports that the connection broke while bound. The
	// connection is discarded after it returns.
	ServerFailed(c *Conn, err error)
	// Released runs after a binding that ServerMessage ended is back in
	// the pool (still on the reader goroutine).
	Released()
}

// Server is a freshly dialed and authenticated server connection, as a
// DialFunc returns it.
type Server struct {
	Conn      net.Conn
	PID       uint32
	SecretKey []byte
	// Params are the ParameterStatus values the server reported at startup.
	Params map[string]string
	// TLS is the client TLS config the connection was made with, nil for
	// plain TCP; a CancelRequest for this connection uses it too.
	TLS *tls.Config
	// Network and Address to dial for a CancelRequest.
	Network, Address string
}

// Conn is a pooled server connection. Its reader goroutine owns reading;
// the session that has it bound writes, from a buffer of its own: a
// binding can end (on the reader goroutine) the instant the server has
// answered, which may be before the writer's call returns, so no write
// state may live in the Conn.
type Conn struct {
	ID      uint64
	pool    *Pool
	srv     Server
	target  Target
	created time.Time
	rd      *wire.Reader

	handler atomic.Pointer[Handler]
	dead    atomic.Bool
	// paramsVer counts changes of params, so a session can tell cheaply
	// that nothing changed since it last synchronized them.
	paramsVer atomic.Uint64
	// idleFatal is the SQLSTATE of an error the server sent while no
	// session had it bound (it then closes): whatever a session sent
	// after that was never run.
	idleFatal atomic.Value
	retire    atomic.Bool // close instead of reusing on release
	done      chan struct{}

	mu       sync.Mutex // guards the fields below
	params   map[string]string
	lastUsed time.Time
	inIdle   bool // on the pool's idle list (guarded by pool.mu, not mu)
	// cancels counts CancelRequests in flight for this connection and
	// parked says Put was called meanwhile (both guarded by pool.mu): the
	// connection goes back to the pool only once they are done, so a
	// cancel meant for a statement that just ended cannot reach the next
	// client's (PgBouncer does the same).
	cancels int
	parked  bool
	closed  bool

	// Session-owned state that lives with the server connection, such as
	// the prepared statements it holds. Only the bound session touches it.
	State any
}

// Target says where the connection points and in which generation.
func (c *Conn) Target() Target { return c.target }

// PID is the server backend's process ID.
func (c *Conn) PID() uint32 { return c.srv.PID }

// Params returns a copy of the parameter values in effect on the
// connection.
func (c *Conn) Params() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.params))
	for k, v := range c.params {
		out[k] = v
	}
	return out
}

// SecretKey is the cancel secret the server gave the connection.
func (c *Conn) SecretKey() []byte { return c.srv.SecretKey }

// Created is when the connection was dialed.
func (c *Conn) Created() time.Time { return c.created }

// LocalAddr of the server socket, for SHOW SERVERS.
func (c *Conn) LocalAddr() net.Addr { return c.srv.Conn.LocalAddr() }

// Param returns a parameter the server last reported (or the proxy last
// set) on this connection.
func (c *Conn) Param(name string) (string, bool) {
	c.mu.Lock()
	v, ok := c.params[name]
	c.mu.Unlock()
	return v, ok
}

// SetParam records a parameter value in effect on this connection.
func (c *Conn) SetParam(name, value string) {
	c.mu.Lock()
	c.params[name] = value
	c.mu.Unlock()
	c.paramsVer.Add(1)
}

// Bind attaches h to receive the server's messages. It returns false when
// the connection died after it was acquired; the caller must then Put it
// back and acquire another.
func (c *Conn) Bind(h *Handler) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead.Load() {
		return false
	}
	c.handler.Store(h)
	return true
}

// Retire marks the connection to be closed when it is released instead of
// going back to the pool.
func (c *Conn) Retire() { c.retire.Store(true) }

// Dead reports whether the connection broke.
func (c *Conn) Dead() bool { return c.dead.Load() }

// Kill closes the socket at once; the reader goroutine then reports the
// failure to the bound handler (if any) and the pool discards it.
func (c *Conn) Kill() {
	c.dead.Store(true)
	c.srv.Conn.Close()
}

// Write sends p to the server. On error the connection is killed, so the
// reader goroutine reports the failure to the bound session.
func (c *Conn) Write(p []byte) error {
	if _, err := c.srv.Conn.Write(p); err != nil {
		c.Kill()
		return err
	}
	return nil
}

// Cancel sends a CancelRequest for this connection's backend on a new
// connection to the same server, over TLS when this connection uses it.
func (c *Conn) Cancel(timeout time.Duration) error {
	c.BeginCancel()
	return c.SendCancel(timeout)
}

// BeginCancel marks a cancel of this connection's backend as under way:
// from now until SendCancel returns, a Put parks the connection instead of
// handing it to the next client. A caller that decides to cancel while it
// knows the connection is still bound to it calls BeginCancel before the
// binding can end, so the cancel can never reach the next client's
// statement.
func (c *Conn) BeginCancel() { c.pool.cancelStarted(c) }

// SendCancel sends the CancelRequest that BeginCancel announced and ends
// it; the connection goes back to the pool if it was released meanwhile.
func (c *Conn) SendCancel(timeout time.Duration) error {
	defer c.pool.cancelEnded(c)
	d := net.Dialer{Timeout: timeout}
	nc, err := d.Dial(c.srv.Network, c.srv.Address)
	if err != nil {
		return fmt.Errorf("cancel: dial %s: %w", c.srv.Address, err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(timeout))
	var conn net.Conn = nc
	if c.srv.TLS != nil {
		if _, err := nc.Write(wire.AppendSSLRequest(nil)); err != nil {
			return fmt.Errorf("cancel: %w", err)
		}
		var resp [1]byte
		if _, err := nc.Read(resp[:]); err != nil {
			return fmt.Errorf("cancel: read SSL response: %w", err)
		}
		if resp[0] != 'S' {
			return errors.New("cancel: server refused TLS")
		}
		tc := tls.Client(nc, c.srv.TLS)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("cancel: TLS handshake: %w", err)
		}
		conn = tc
	}
	if _, err := conn.Write(wire.AppendCancelRequest(nil, c.srv.PID, c.srv.SecretKey)); err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	// The server closes the connection without answering; wait for that so
	// the request is processed before we return.
	var b [1]byte
	conn.Read(b[:])
	return nil
}

// readLoop is the connection's reader goroutine: it delivers messages to
// the bound handler, and handles the rare messages an idle server sends.
func (c *Conn) readLoop() {
	defer close(c.done)
	defer c.pool.conns.remove(c)
	for {
		m, err := c.rd.ReadMessage()
		if err != nil {
			c.fail(err)
			return
		}
		h := c.handler.Load()
		if h == nil {
			c.idleMessage(m)
			continue
		}
		if (*h).ServerMessage(c, m, c.rd.HasMessage()) {
			c.handler.Store(nil)
			c.pool.Put(c)
			(*h).Released()
		}
	}
}

// idleMessage handles a message from a server that no session has bound:
// an asynchronous ParameterStatus after a configuration reload, a notice, or
// a FATAL error before the server closes (an administrator shutdown, 57P01).
func (c *Conn) idleMessage(m wire.Message) {
	switch m.Type() {
	case wire.MsgParameterStatus:
		if name, value, err := wire.ParameterStatus(m); err == nil {
			c.SetParam(string(name), string(value))
		}
	case wire.MsgErrorResponse:
		c.Retire()
		f, _ := wire.ParseError(m)
		c.idleFatal.Store(string(f.Code))
		c.pool.log.Info("idle server connection reported an error",
			slog.Uint64("server", c.ID), slog.String("sqlstate", string(f.Code)), slog.String("message", string(f.Message)))
		c.pool.serverError(c, string(f.Code))
	}
}

func (c *Conn) fail(err error) {
	c.mu.Lock()
	c.dead.Store(true)
	h := c.handler.Swap(nil)
	c.mu.Unlock()
	c.srv.Conn.Close()
	if h != nil {
		(*h).ServerFailed(c, err)
		c.pool.Put(c)
		return
	}
	c.pool.dropIdle(c)
}

// close sends Terminate and closes the socket. Only for connections no
// session has bound.
func (c *Conn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	if !c.dead.Load() {
		c.srv.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		c.srv.Conn.Write([]byte{wire.MsgTerminate, 0, 0, 0, 4})
	}
	c.dead.Store(true)
	c.srv.Conn.Close()
}

// Unbind detaches h if it is still bound and reports whether it was; the
// caller then owns the connection and must Put it.
func (c *Conn) Unbind(h *Handler) bool {
	return c.handler.CompareAndSwap(h, nil)
}

// IdleFatal returns the SQLSTATE of the error the server sent while idle,
// before it closed, or "".
func (c *Conn) IdleFatal() string {
	v, _ := c.idleFatal.Load().(string)
	return v
}

// ParamsVersion changes whenever a parameter of the connection does.
func (c *Conn) ParamsVersion() uint64 { return c.paramsVer.Load() }
