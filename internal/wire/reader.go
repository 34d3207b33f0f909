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
}

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

// ReleaseBuffer drops the read buffer when nothing is buffered, so an idle
// connection holds no read memory. The next read allocates it again.
func (rd *Reader) ReleaseBuffer() {
	if rd.start == rd.end {
		rd.buf = nil
		rd.big = nil
		rd.start, rd.end = 0, 0
	}
}

// ReadMessage returns the next message. The returned Message aliases the
// reader's buffer and is valid only until the next call to ReadMessage,
// Reset or ReleaseBuffer.
func (rd *Reader) ReadMessage() (Message, error) {
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
		m, err := rd.r.Read(rd.buf[rd.end:])
		rd.end += m
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
