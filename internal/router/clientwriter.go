package router

import (
	"io"

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
