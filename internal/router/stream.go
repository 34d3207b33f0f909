package router

import (
	"encoding/binary"
	"log/slog"

	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Large client messages are streamed, not buffered.
//
// A client message longer than streamLimit whose type allows it (a Query,
// a Bind, CopyData) is read only up to its first streamHead bytes: the
// header, which announces the whole length, and the start of the body,
// which holds all the proxy looks at (a Bind's statement name). The pump
// binds a server connection as for any message (a client that sends one
// while none is free waits there, and the rest of its message waits in the
// socket), forwards the head, then copies the rest from the client socket
// to the server piece by piece through the reader's buffer. So a client's
// read memory stays at its buffer whatever it sends; PgBouncer streams the
// same way. A streamed message is not kept for a safe retry, and a
// streamed Query is not looked into for statements that change session
// state (see effects.go).
//
// Messages the proxy must hold whole (a Parse, whose query names a shared
// statement) are read into a buffer of their own, accounted against the
// proxy-wide large_message_budget.

const (
	// streamLimit is the size above which a streamable message is
	// streamed; below it a message is read whole (the reader keeps a
	// buffer of up to 1 MiB for such messages, see wire.maxKeptBig).
	streamLimit = 64 << 10
	// streamHead is how much of a streamed message is read before the
	// rest is forwarded: a client reader's borrowed buffer.
	streamHead = 4 << 10
)

// streamable reports the client message types that may be streamed.
func streamable(typ byte) bool {
	switch typ {
	case wire.MsgQuery, wire.MsgBind, wire.MsgCopyData:
		return true
	}
	return false
}

// streamRest forwards the rest of a streamed message from the client to
// srv. A client that breaks off mid-message leaves srv with half a
// message: srv is closed, and the session ends. Called by the client pump
// without mu.
func (s *Session) streamRest(srv *pool.Conn) bool {
	s.flushServer()
	alive := true
	for s.crd.Remaining() > 0 {
		p, err := s.crd.ReadPiece()
		if err != nil {
			s.r.log.Debug("client broke off a streamed message", slog.Uint64("client", s.ID), slog.Any("err", err))
			srv.Kill()
			return false
		}
		s.db.stats.Received.Add(int64(len(p)))
		if alive && srv.Write(p) != nil {
			// The server is gone (ServerFailed tells the client); the
			// rest is read and dropped to stay in step with the client.
			alive = false
		}
	}
	return true
}

// dropRest reads and drops the rest of a streamed message that was not
// forwarded. It reports false when the client connection broke.
func (s *Session) dropRest() bool {
	for s.crd.Remaining() > 0 {
		if _, err := s.crd.ReadPiece(); err != nil {
			return false
		}
	}
	return true
}

// appendBindRenamed appends m, a Bind, with its statement name replaced;
// for a streamed Bind (only its head read), the length in the header
// still covers the whole message.
func (s *Session) appendBindRenamed(dst []byte, m wire.Message, portal []byte, stmtEnd int, name string) []byte {
	start := len(dst)
	dst = appendBindRenamed(dst, m, portal, stmtEnd, name)
	if rest := s.rest(); rest > 0 {
		n := binary.BigEndian.Uint32(dst[start+1:])
		binary.BigEndian.PutUint32(dst[start+1:], n+uint32(rest))
	}
	return dst
}
