package main

import (
	"fmt"
	"net"
)

// single is option (a): one goroutine per client, which reads the client's
// messages up to a Query or Sync, binds a server connection, writes them,
// then reads the server's answer itself up to the ReadyForQuery that
// answers the last of them, writes it to the client (one write per answer
// that fits the buffer) and releases the connection if the rule allows.
// A transaction wakes one goroutine, twice: on the client's query and on
// the server's answer.
//
// What it cannot do, by construction: forward what a server sends while
// its session waits on the client (a notice or ParameterStatus while idle
// in a transaction, a FATAL, a NOTIFY), or answer a batch the client ends
// with Flush instead of Sync (the session waits on the client, and the
// answer waits in the server socket).
type single struct {
	*goBase
}

func startSingle(cfg config, servers []net.Conn, greet []byte) (forwarder, error) {
	b, err := newGoBase(cfg, servers, greet)
	if err != nil {
		return nil, err
	}
	s := &single{goBase: b}
	b.wg.Add(1)
	go b.acceptLoop(s.session)
	return s, nil
}

// session is the client's goroutine: the only reader and writer of the
// client socket and, while bound, of its server connection.
func (g *single) session(c net.Conn) {
	buf := make([]byte, bufSize)
	end, err := login(c, buf, g.greet)
	if err != nil {
		return
	}
	var srv *goServer
	defer func() {
		switch {
		case srv == nil:
		case srv.txn.releasable():
			g.release(srv)
		default:
			g.drop(srv, nil)
		}
	}()
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
			if srv == nil {
				if srv = g.acquire(); srv == nil {
					return
				}
			}
			if _, err := srv.conn.Write(buf[:s.n]); err != nil {
				g.drop(srv, err)
				srv = nil
				return
			}
			srv.txn.sent(s.syncs)
			if err := answer(c, srv); err != nil {
				g.drop(srv, err)
				srv = nil
				return
			}
			if srv.txn.releasable() {
				g.release(srv)
				srv = nil
			}
		}
		if s.terminate {
			return
		}
		end = copy(buf, buf[s.n:end])
	}
}

// answer reads srv's answer until every Query and Sync sent has had its
// ReadyForQuery, and writes it to c: in one write when it fits srv's
// buffer, in one write per buffer otherwise. An error means srv is
// broken; a failed write to the client is returned too, since the rest of
// the answer cannot be forwarded.
func answer(c net.Conn, srv *goServer) error {
	for srv.txn.pending > 0 {
		n, err := srv.conn.Read(srv.buf[srv.end:])
		if err != nil {
			return fmt.Errorf("read server: %w", err)
		}
		srv.end += n
		s, err := srv.fr.scan(srv.buf[srv.fwd:srv.end])
		if err != nil {
			return err
		}
		srv.fwd += s.n
		srv.txn.answered(s)
		// Write when the answer is complete, or when the buffer has too
		// little room left for another read to be worth it.
		if srv.txn.pending == 0 || len(srv.buf)-srv.end < headerLen*64 {
			if _, err := c.Write(srv.buf[:srv.fwd]); err != nil {
				return fmt.Errorf("write client: %w", err)
			}
			srv.end = copy(srv.buf, srv.buf[srv.fwd:srv.end])
			srv.fwd = 0
		}
	}
	return nil
}
