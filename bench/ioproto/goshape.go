package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
)

// bufSize is each connection's read buffer. pgbench's messages and answers
// fit many times over; larger messages stream through (framer).
const bufSize = 8192

// goServer is a server connection of the goroutine shapes.
type goServer struct {
	conn net.Conn
	txn  txn
	// Used by single only: the session reads the answer itself.
	fr  framer
	buf []byte
	fwd int // buf[:fwd] is scanned and waits to be written to the client
	end int // buf[:end] holds data
	// Used by pair only: the bound client, read by the server's reader
	// without the client's lock.
	client atomic.Pointer[pairClient]
}

// goBase is what pair and single share: the listener, the accept loop,
// the pool of idle server connections and the bookkeeping Close needs.
type goBase struct {
	ln    net.Listener
	greet []byte
	// free holds the idle server connections. Goroutines blocked on a
	// receive are served in arrival order (the runtime's recvq is FIFO),
	// which is the FIFO wait queue of a pooler.
	free chan *goServer
	done chan struct{} // closed by Close

	mu      sync.Mutex // guards clients, servers, closed
	clients map[net.Conn]struct{}
	servers map[*goServer]struct{}
	closed  bool

	wg        sync.WaitGroup
	closeOnce sync.Once
}

func newGoBase(cfg config, servers []net.Conn, greet []byte) (*goBase, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	b := &goBase{
		ln:      ln,
		greet:   greet,
		free:    make(chan *goServer, len(servers)),
		done:    make(chan struct{}),
		clients: make(map[net.Conn]struct{}),
		servers: make(map[*goServer]struct{}),
	}
	for _, c := range servers {
		s := &goServer{conn: c, txn: newTxn(), buf: make([]byte, bufSize)}
		b.servers[s] = struct{}{}
		b.free <- s
	}
	return b, nil
}

func (b *goBase) Addr() string { return b.ln.Addr().String() }

// acceptLoop runs serve in a goroutine of its own for each client until
// the listener is closed.
func (b *goBase) acceptLoop(serve func(net.Conn)) {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			c.Close()
			return
		}
		b.clients[c] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		go func() {
			defer b.wg.Done()
			defer b.forget(c)
			serve(c)
		}()
	}
}

// forget closes a client that has left.
func (b *goBase) forget(c net.Conn) {
	b.mu.Lock()
	delete(b.clients, c)
	b.mu.Unlock()
	c.Close()
}

// acquire takes an idle server connection, waiting in arrival order; nil
// once Close has been called.
func (b *goBase) acquire() *goServer {
	select {
	case s := <-b.free:
		return s
	case <-b.done:
		return nil
	}
}

// release gives s back. free has room for every server connection, so
// this never blocks.
func (b *goBase) release(s *goServer) { b.free <- s }

// drop closes a server connection that cannot go back (its client left
// mid-transaction, or it failed); the pool is one smaller from then on.
func (b *goBase) drop(s *goServer, why error) {
	b.mu.Lock()
	_, ok := b.servers[s]
	delete(b.servers, s)
	closed := b.closed
	b.mu.Unlock()
	s.conn.Close()
	if ok && !closed && why != nil && !errors.Is(why, net.ErrClosed) && !errors.Is(why, io.EOF) {
		log.Printf("server connection dropped: %v", why)
	}
}

func (b *goBase) Close() error {
	b.closeOnce.Do(func() {
		close(b.done)
		b.ln.Close()
		b.mu.Lock()
		b.closed = true
		for c := range b.clients {
			c.Close()
		}
		for s := range b.servers {
			s.conn.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return nil
}

// login answers the client's startup packets through buf and returns how
// many bytes past its StartupMessage are already in buf.
func login(c net.Conn, buf, greet []byte) (int, error) {
	end := 0
	for {
		act, l, err := parseStartup(buf[:end])
		switch act {
		case startupNeedMore:
			if end == len(buf) {
				return 0, fmt.Errorf("startup packet larger than %d bytes", len(buf))
			}
			n, err := c.Read(buf[end:])
			if err != nil {
				return 0, err
			}
			end += n
			continue
		case startupDeclineSSL:
			if _, err := c.Write([]byte{'N'}); err != nil {
				return 0, err
			}
		case startupGreet:
			if _, err := c.Write(greet); err != nil {
				return 0, err
			}
			return copy(buf, buf[l:end]), nil
		case startupClose:
			if err == nil {
				err = io.EOF
			}
			return 0, err
		}
		end = copy(buf, buf[l:end])
	}
}
