package router

import (
	"io"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// clientBufs lends the write buffers of client connections. A client
// holds one only between the first message of a response and its flush,
// so ten thousand idle clients share a handful. 4 KiB is PgBouncer's
// pkt_buf.
var clientBufs = wire.NewBufferPool(4 << 10)

// clientWriter is a bufio.Writer whose buffer is borrowed from clientBufs
// on the first Write and given back on Flush. Like bufio.Writer, a write
// error sticks: later Writes and Flushes return it. Session.wmu serializes
// its use.
type clientWriter struct {
	w      io.Writer
	bufp   *[]byte
	n      int
	err    error
	writes uint64 // writes to w so far: bytes that may have reached the client
}

// writerMark is a point in a clientWriter's output (see mark, rollback).
type writerMark struct {
	writes uint64
	n      int
}

// mark returns the current point of the output.
func (cw *clientWriter) mark() writerMark { return writerMark{cw.writes, cw.n} }

// rollback drops what was buffered since m, provided none of it has been
// written to the client since; it reports whether it could.
func (cw *clientWriter) rollback(m writerMark) bool {
	if cw.writes != m.writes || cw.n < m.n {
		return false
	}
	cw.n = m.n
	return true
}

func newClientWriter(w io.Writer) *clientWriter { return &clientWriter{w: w} }

// Write buffers p, flushing first when p does not fit; a p as large as the
// buffer goes out directly.
func (cw *clientWriter) Write(p []byte) (int, error) {
	if cw.err != nil {
		return 0, cw.err
	}
	size := clientBufs.Size()
	if cw.n+len(p) > size && cw.n > 0 {
		if err := cw.writeOut(); err != nil {
			return 0, err
		}
	}
	if len(p) >= size {
		cw.writes++
		if _, err := cw.w.Write(p); err != nil {
			cw.err = err
			return 0, err
		}
		return len(p), nil
	}
	if cw.bufp == nil {
		cw.bufp = clientBufs.Get()
	}
	cw.n += copy((*cw.bufp)[cw.n:], p)
	return len(p), nil
}

// Flush writes what is buffered and gives the buffer back.
func (cw *clientWriter) Flush() error {
	if cw.err == nil && cw.n > 0 {
		cw.writeOut()
	}
	if cw.bufp != nil {
		clientBufs.Put(cw.bufp)
		cw.bufp = nil
	}
	return cw.err
}

// writeOut writes the buffered bytes, keeping the buffer.
func (cw *clientWriter) writeOut() error {
	cw.writes++
	_, err := cw.w.Write((*cw.bufp)[:cw.n])
	cw.n = 0
	if err != nil {
		cw.err = err
	}
	return err
}

// Writing to the client.
//
// Three goroutines have things for the client: the client pump (answers
// the proxy owes, errors of batches it failed), the bound server's reader
// (the server's answers) and writeNotifies (notifications to an idle
// client). Every byte goes through the session's clientWriter, and only
// through the methods below: each takes wmu for whole messages, and a
// decision made under mu is written before mu is given up (sendLocked),
// so the client gets messages in the order the decisions were made. That
// is the one hand-off rule; nothing else touches cw or wmu.

// sendLocked writes a, b and c (nil ones are skipped) and flushes if
// flush. Called with mu held; it takes wmu before it releases mu, and
// returns with mu released.
func (s *Session) sendLocked(flush bool, a, b, c []byte) error {
	s.wmu.Lock()
	s.mu.Unlock()
	err := s.writeParts(flush, a, b, c)
	s.wmu.Unlock()
	return err
}

// send is sendLocked for a caller that does not hold mu.
func (s *Session) send(flush bool, a, b, c []byte) error {
	s.wmu.Lock()
	err := s.writeParts(flush, a, b, c)
	s.wmu.Unlock()
	return err
}

// writeParts writes under wmu.
func (s *Session) writeParts(flush bool, a, b, c []byte) error {
	if len(a) > 0 {
		s.cw.Write(a)
	}
	if len(b) > 0 {
		s.cw.Write(b)
	}
	if len(c) > 0 {
		s.cw.Write(c)
	}
	if flush {
		return s.cw.Flush()
	}
	return s.cw.err
}

// writeClient writes b and flushes.
func (s *Session) writeClient(b []byte) { s.send(true, b, nil, nil) }

// flushClient sends what is buffered for the client.
func (s *Session) flushClient() { s.send(true, nil, nil, nil) }

// fatalClient writes a FATAL ErrorResponse and closes the client
// connection. A client that does not read does not block the caller past
// a second: whoever holds wmu gives it up within the write deadline.
func (s *Session) fatalClient(code, msg string) {
	s.cc.SetWriteDeadline(time.Now().Add(time.Second))
	s.send(true, wire.AppendError(nil, wire.SeverityFatal, code, msg), nil, nil)
	s.cc.Close()
}

// markClient returns the client output's current point, for a batch that
// may have to be taken back (retry.go).
func (s *Session) markClient() writerMark {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.cw.mark()
}

// rollbackClient drops what was buffered for the client since m, if none
// of it was written yet (see clientWriter.rollback).
func (s *Session) rollbackClient(m writerMark) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.cw.rollback(m)
}

// writtenSince reports whether anything reached the client socket since
// m.
func (s *Session) writtenSince(m writerMark) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.cw.writes != m.writes
}
