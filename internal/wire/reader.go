package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxMessageSize bounds one message when the caller sets no limit.
// PostgreSQL itself accepts up to 1 GB for most messages (PqRecvLength
// limits in src/backend/libpq/pqcomm.c); a proxy must not let one client make
// it allocate that much, so the default is far lower and configurable.
const DefaultMaxMessageSize = 64 << 20

// defaultBufSize is the read buffer of a Reader. 8 KiB matches PostgreSQL's
// own PQ_RECV_BUFFER_SIZE and keeps idle clients cheap.
const defaultBufSize = 8 << 10

// ErrMessageTooLarge is returned (wrapped in *FrameError) when a message
// header announces more than the reader's limit.
var ErrMessageTooLarge = errors.New("message too large")

// FrameError reports a message header that cannot be valid. The stream is
// unusable after it: the reader does not know where the next message starts.
type FrameError struct {
	Type   byte
	Length int64
	Err    error
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("bad message header (type %q, length %d): %v", e.Type, e.Length, e.Err)
}

func (e *FrameError) Unwrap() error { return e.Err }

// Reader reads typed protocol messages (1-byte type, 4-byte length) from a
// stream, reusing one buffer. It is not safe for concurrent use; each socket
// direction has one owner goroutine.
type Reader struct {
	r     io.Reader
	buf   []byte
	start int // first unread byte in buf
	end   int // end of valid data in buf
	max   int
	big   []byte // for messages larger than buf; dropped after use
	size  int    // buffer size to allocate lazily

	// A pooled Reader (NewPooledReader) frames small messages in small
	// and borrows a buffer from pool only while data does not fit there.
	pool  *BufferPool
	bufp  *[]byte // the borrowed buffer (buf), to give back
	full  bool    // the last read filled buf
	small [smallBufSize]byte

	// remaining counts the bytes of a message returned by
	// ReadMessageHead that the caller has not read with ReadPiece yet.
	remaining int
	// budget, when set, accounts for the memory of messages larger than
	// the buffer (big): held from their read to the next.
	budget *Budget
	held   int
}

// smallBufSize is the buffer a pooled Reader owns: enough for the typical
// Query or Bind/Execute/Sync batch, so that most clients never borrow.
const smallBufSize = 256

// NewReader returns a Reader on r that refuses messages longer than max bytes
// (header included); max <= 0 means DefaultMaxMessageSize. The buffer is
// allocated on first use, so a Reader that never reads costs nothing.
func NewReader(r io.Reader, max int) *Reader {
	return NewReaderSize(r, max, defaultBufSize)
}

// NewReaderSize is NewReader with a read buffer of size bytes. Messages
// larger than the buffer are read into a second buffer, kept for reuse up
// to maxKeptBig.
func NewReaderSize(r io.Reader, max, size int) *Reader {
	if max <= 0 {
		max = DefaultMaxMessageSize
	}
	if size < 64 {
		size = 64
	}
	return &Reader{r: r, max: max, size: size}
}

// NewPooledReader is NewReader for a connection that is idle most of the
// time: it owns a buffer of a few hundred bytes, borrows one of pool's when
// a read fills that (a burst, a COPY, a large message) and gives it back on
// ReleaseBuffer. A Reader must not be copied.
func NewPooledReader(r io.Reader, max int, pool *BufferPool) *Reader {
	rd := NewReaderSize(r, max, pool.Size())
	rd.pool = pool
	rd.buf = rd.small[:]
	return rd
}

// SetMaxMessageSize changes the limit on one message (header included);
// max <= 0 means DefaultMaxMessageSize.
func (rd *Reader) SetMaxMessageSize(max int) {
	if max <= 0 {
		max = DefaultMaxMessageSize
	}
	rd.max = max
}

// maxKeptBig is the largest oversized-message buffer a Reader keeps between
// messages: COPY streams send many messages of a few tens of KiB, which
// should not each cost an allocation; anything bigger is rare.
const maxKeptBig = 1 << 20

// Reset points the reader at a new stream, keeping its buffer. Unread bytes
// are discarded.
func (rd *Reader) Reset(r io.Reader) {
	rd.r = r
	rd.start, rd.end = 0, 0
}

// Buffered reports how many bytes are already read from the stream but not
// yet returned. Callers flush their writes when it is zero, before the next
// ReadMessage may block.
func (rd *Reader) Buffered() int { return rd.end - rd.start }

// HasMessage reports whether a complete message is already buffered, so the
// next ReadMessage will not block.
func (rd *Reader) HasMessage() bool {
	n := rd.end - rd.start
	if n < 5 {
		return false
	}
	l := int(binary.BigEndian.Uint32(rd.buf[rd.start+1:]))
	return n >= l+1
}

// ReleaseBuffer drops the read buffer when nothing is buffered (a pooled
// Reader gives a borrowed one back and keeps its small one), so an idle
// connection holds little read memory. The next read allocates or borrows
// again.
func (rd *Reader) ReleaseBuffer() {
	if rd.start != rd.end || rd.remaining > 0 {
		return
	}
	rd.releaseBudget()
	rd.start, rd.end = 0, 0
	rd.big = nil
	rd.full = false
	if rd.pool == nil {
		rd.buf = nil
		return
	}
	if rd.bufp != nil {
		rd.pool.Put(rd.bufp)
		rd.bufp = nil
	}
	rd.buf = rd.small[:]
}

// borrow moves the buffered bytes into a buffer from the pool (a pooled
// Reader whose small buffer is too small for what is coming).
func (rd *Reader) borrow() {
	bp := rd.pool.Get()
	rd.end = copy(*bp, rd.buf[rd.start:rd.end])
	rd.start = 0
	rd.buf = *bp
	rd.bufp = bp
}

// ReadMessage returns the next message. The returned Message aliases the
// reader's buffer and is valid only until the next call to ReadMessage,
// Reset or ReleaseBuffer.
func (rd *Reader) ReadMessage() (Message, error) {
	return rd.ReadMessageHead(0, 0, nil)
}

// ReadMessageHead is ReadMessage for a caller that can forward a large
// message in pieces, so that whatever its size the reader holds no more
// than its buffer: a message longer than limit bytes whose type stream
// accepts comes back as its first head bytes only (the header, which
// still announces the whole length, then the start of the body). Remaining
// then says how many bytes are left; the caller reads them with ReadPiece
// before the next message. limit <= 0 never streams. head must fit the
// reader's (borrowed) buffer.
func (rd *Reader) ReadMessageHead(limit, head int, stream func(typ byte) bool) (Message, error) {
	if rd.remaining > 0 {
		return Message{}, errors.New("wire: message read before the rest of the last one")
	}
	rd.releaseBudget()
	if err := rd.fill(5); err != nil {
		return Message{}, err
	}
	typ := rd.buf[rd.start]
	length := int64(binary.BigEndian.Uint32(rd.buf[rd.start+1:]))
	if length < 4 {
		return Message{}, &FrameError{Type: typ, Length: length, Err: errors.New("length below 4")}
	}
	total := length + 1
	if total > int64(rd.max) {
		return Message{}, &FrameError{Type: typ, Length: length, Err: ErrMessageTooLarge}
	}
	n := int(total)
	if limit > 0 && n > limit && head >= 5 && head < n && stream != nil && stream(typ) {
		if head > len(rd.buf) && rd.pool != nil && rd.bufp == nil && head <= rd.pool.Size() {
			rd.borrow()
		}
		if head > len(rd.buf) {
			head = len(rd.buf)
		}
		if err := rd.fill(head); err != nil {
			return Message{}, err
		}
		m := Message(rd.buf[rd.start : rd.start+head : rd.start+head])
		rd.start += head
		rd.remaining = n - head
		return m, nil
	}
	if n > len(rd.buf) && rd.pool != nil && rd.bufp == nil && n <= rd.pool.Size() {
		rd.borrow()
	}
	if n <= len(rd.buf) {
		if err := rd.fill(n); err != nil {
			return Message{}, err
		}
		m := Message(rd.buf[rd.start : rd.start+n : rd.start+n])
		rd.start += n
		return m, nil
	}
	// Larger than the buffer: read into a dedicated slice. Large messages
	// are rare (COPY rows, big parameters) and their cost dwarfs an
	// allocation; keeping a huge buffer around for every connection would
	// not be worth it.
	if rd.budget != nil {
		if !rd.budget.take(n) {
			return Message{}, &FrameError{Type: typ, Length: length, Err: ErrBudgetExhausted}
		}
		rd.held = n
	}
	if cap(rd.big) >= n {
		rd.big = rd.big[:n]
	} else {
		rd.big = make([]byte, n)
	}
	copied := copy(rd.big, rd.buf[rd.start:rd.end])
	rd.start += copied
	if _, err := io.ReadFull(rd.r, rd.big[copied:]); err != nil {
		return Message{}, unexpectedEOF(err)
	}
	m := Message(rd.big[:n:n])
	if cap(rd.big) > maxKeptBig {
		rd.big = nil
	}
	return m, nil
}

// Remaining is how many bytes of the message ReadMessageHead returned are
// still to be read with ReadPiece.
// A nil Reader has nothing remaining.
func (rd *Reader) Remaining() int {
	if rd == nil {
		return 0
	}
	return rd.remaining
}

// ReadPiece returns the next piece of the rest of a message returned by
// ReadMessageHead: what is buffered, else one read into the buffer. The
// piece aliases the buffer and is valid until the next call.
func (rd *Reader) ReadPiece() ([]byte, error) {
	if rd.remaining == 0 {
		return nil, io.EOF
	}
	if rd.start == rd.end {
		rd.start, rd.end = 0, 0
		want := rd.remaining
		if want > len(rd.buf) {
			want = len(rd.buf)
		}
		m, err := rd.r.Read(rd.buf[:want])
		rd.end = m
		if m == 0 && err != nil {
			return nil, unexpectedEOF(err)
		}
	}
	n := rd.end - rd.start
	if n > rd.remaining {
		n = rd.remaining
	}
	p := rd.buf[rd.start : rd.start+n]
	rd.start += n
	rd.remaining -= n
	return p, nil
}

// SetBudget makes the reader account the messages it reads into a buffer
// of their own (larger than its buffer) against b, refusing one that does
// not fit (ErrBudgetExhausted).
func (rd *Reader) SetBudget(b *Budget) { rd.budget = b }

func (rd *Reader) releaseBudget() {
	if rd.held > 0 {
		rd.budget.give(rd.held)
		rd.held = 0
	}
}

// fill ensures at least n bytes are buffered (n <= len(buf)).
func (rd *Reader) fill(n int) error {
	if rd.buf == nil {
		rd.buf = make([]byte, rd.size)
	}
	if rd.end-rd.start >= n {
		return nil
	}
	if rd.start+n > len(rd.buf) {
		// Compact: move the partial message to the front.
		rd.end = copy(rd.buf, rd.buf[rd.start:rd.end])
		rd.start = 0
	}
	for rd.end-rd.start < n {
		if rd.full && rd.pool != nil && rd.bufp == nil {
			// The last read filled the small buffer: more is likely
			// waiting (a burst, a COPY), so read it in larger pieces.
			rd.borrow()
		}
		m, err := rd.r.Read(rd.buf[rd.end:])
		rd.end += m
		rd.full = rd.end == len(rd.buf)
		if err != nil {
			if rd.end-rd.start >= n {
				return nil
			}
			if rd.end > rd.start {
				return unexpectedEOF(err)
			}
			return err
		}
	}
	return nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
