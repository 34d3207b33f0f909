package main

import (
	"net"
	"sync"
)

// pair is today's shape: per client a pump goroutine that reads the client
// and writes to the bound server, and per server connection a persistent
// reader goroutine that forwards the answer to the client and gives the
// connection back at the ReadyForQuery that makes it releasable. Each
// transaction therefore wakes two goroutines: the pump on the client's
// query, the server's reader on the answer.
type pair struct {
	*goBase
}

// pairClient is one client of pair. mu guards server and the bound
// server's txn: the pump and the server's reader both change them.
type pairClient struct {
	conn   net.Conn
	mu     sync.Mutex
	server *goServer
}

func startPair(cfg config, servers []net.Conn, greet []byte) (forwarder, error) {
	b, err := newGoBase(cfg, servers, greet)
	if err != nil {
		return nil, err
	}
	p := &pair{goBase: b}
	for s := range b.servers {
		b.wg.Add(1)
		go p.readServer(s)
	}
	b.wg.Add(1)
	go b.acceptLoop(p.pump)
	return p, nil
}

// pump is the client's goroutine: the only reader of the client socket
// and the only writer to its bound server.
func (p *pair) pump(c net.Conn) {
	buf := make([]byte, bufSize)
	end, err := login(c, buf, p.greet)
	if err != nil {
		return
	}
	cl := &pairClient{conn: c}
	defer p.leave(cl)
	fr := framer{fromClient: true}
	for {
		if end < headerLen {
			n, err := c.Read(buf[end:])
			if err != nil {
				return
			}
			end += n
		}
		s, err := fr.scan(buf[:end])
		if err != nil {
			return
		}
		if s.n > 0 {
			srv := p.bind(cl, s.syncs)
			if srv == nil {
				return
			}
			if _, err := srv.conn.Write(buf[:s.n]); err != nil {
				return
			}
		}
		if s.terminate {
			return
		}
		end = copy(buf, buf[s.n:end])
	}
}

// bind returns the client's server connection, acquiring one if none is
// bound, and records syncs more Query or Sync messages on its way.
func (p *pair) bind(cl *pairClient, syncs int) *goServer {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.server == nil {
		// Only this goroutine binds, so nothing changes while unlocked.
		cl.mu.Unlock()
		srv := p.acquire()
		cl.mu.Lock()
		if srv == nil {
			return nil
		}
		cl.server = srv
		srv.client.Store(cl)
	}
	cl.server.txn.sent(syncs)
	return cl.server
}

// leave unbinds a client that has gone: its server connection goes back
// if it is idle and is closed otherwise.
func (p *pair) leave(cl *pairClient) {
	cl.mu.Lock()
	srv := cl.server
	cl.server = nil
	clean := srv != nil && srv.txn.releasable()
	if srv != nil {
		srv.client.Store(nil)
	}
	cl.mu.Unlock()
	switch {
	case srv == nil:
	case clean:
		p.release(srv)
	default:
		p.drop(srv, nil)
	}
}

// readServer is the server connection's reader for its whole life: it
// forwards what the server sends to the bound client and releases the
// connection after writing the ReadyForQuery that makes it releasable.
// Releasing after the write, and checking again under the client's lock,
// keeps the client's messages in order even if it sends its next query
// before this goroutine has looked again.
func (p *pair) readServer(srv *goServer) {
	defer p.wg.Done()
	buf := make([]byte, bufSize)
	fr := framer{}
	end := 0
	for {
		n, err := srv.conn.Read(buf[end:])
		if err != nil {
			p.serverGone(srv, err)
			return
		}
		end += n
		s, err := fr.scan(buf[:end])
		if err != nil {
			p.serverGone(srv, err)
			return
		}
		cl := srv.client.Load()
		bound := false
		if cl != nil {
			cl.mu.Lock()
			if bound = cl.server == srv; bound {
				srv.txn.answered(s)
			}
			cl.mu.Unlock()
		}
		// Unbound: something the server sent between transactions (a
		// notice); nobody is there to read it.
		if bound {
			// A failed write means the client left; its pump sees it too.
			cl.conn.Write(buf[:s.n])
			if s.ready > 0 {
				p.releaseIfIdle(cl, srv)
			}
		}
		end = copy(buf, buf[s.n:end])
	}
}

func (p *pair) releaseIfIdle(cl *pairClient, srv *goServer) {
	cl.mu.Lock()
	if cl.server != srv || !srv.txn.releasable() {
		cl.mu.Unlock()
		return
	}
	cl.server = nil
	srv.client.Store(nil)
	cl.mu.Unlock()
	p.release(srv)
}

// serverGone closes a failed server connection and its client, if any.
func (p *pair) serverGone(srv *goServer, err error) {
	if cl := srv.client.Load(); cl != nil {
		cl.conn.Close()
	}
	p.drop(srv, err)
}
