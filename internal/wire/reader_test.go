package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// These tests are in package wire so that they can shrink the Reader's
// buffer (Reader.size): the boundary cases then need a few bytes instead of
// 8 KiB, and the fuzz target reaches them.

// msg builds a typed message with a body of n bytes of filler.
func msg(typ byte, n int) []byte {
	m := make([]byte, 5+n)
	m[0] = typ
	binary.BigEndian.PutUint32(m[1:], uint32(4+n))
	for i := range n {
		m[5+i] = byte('a' + i%26)
	}
	return m
}

// chunkReader returns at most chunk bytes per Read (all when chunk is 0),
// returns io.EOF together with the last bytes when eofWithData is set, and
// counts its Read calls.
type chunkReader struct {
	data        []byte
	chunk       int
	eofWithData bool
	reads       int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	c.reads++
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if c.chunk > 0 && n > c.chunk {
		n = c.chunk
	}
	n = copy(p, c.data[:min(n, len(c.data))])
	c.data = c.data[n:]
	if len(c.data) == 0 && c.eofWithData {
		return n, io.EOF
	}
	return n, nil
}

// newSmallReader is a Reader whose buffer holds size bytes.
func newSmallReader(r io.Reader, max, size int) *Reader {
	rd := NewReader(r, max)
	rd.size = size
	return rd
}

func TestReaderMessages(t *testing.T) {
	small := msg('Z', 1)
	medium := msg('D', 20)
	large := msg('d', 100) // larger than the 32-byte buffer below
	tests := []struct {
		name  string
		msgs  [][]byte
		size  int // buffer size; 0 for the default
		chunk int
	}{
		{name: "one message", msgs: [][]byte{small}},
		{name: "many in one read", msgs: [][]byte{small, medium, small, medium}},
		{name: "byte by byte", msgs: [][]byte{small, medium, small}, chunk: 1},
		// 32-byte buffer: the second medium message starts at offset 25
		// and ends at 50, so it spans the end of the buffer and is moved
		// to the front (compaction).
		{name: "spans the buffer end", msgs: [][]byte{medium, medium, medium, small}, size: 32},
		{name: "spans the buffer end, split reads", msgs: [][]byte{medium, medium, medium, small}, size: 32, chunk: 7},
		{name: "larger than the buffer", msgs: [][]byte{small, large, small}, size: 32},
		{name: "larger than the buffer, split reads", msgs: [][]byte{large, large, medium, large}, size: 32, chunk: 9},
		{name: "larger than the default buffer", msgs: [][]byte{small, msg('d', 3*defaultBufSize), small}},
		// A header at the very end of the buffer and its body after.
		{name: "header at the buffer end", msgs: [][]byte{msg('D', 27), medium}, size: 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &chunkReader{data: bytes.Join(tt.msgs, nil), chunk: tt.chunk}
			rd := NewReader(src, 0)
			if tt.size > 0 {
				rd.size = tt.size
			}
			for i, want := range tt.msgs {
				got, err := rd.ReadMessage()
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("message %d: got %q, want %q", i, got, want)
				}
				if got.Type() != want[0] || !bytes.Equal(got.Body(), want[5:]) {
					t.Fatalf("message %d: Type/Body disagree with the bytes", i)
				}
			}
			if _, err := rd.ReadMessage(); err != io.EOF {
				t.Fatalf("after the last message: got %v, want io.EOF", err)
			}
		})
	}
}

// A message larger than the buffer is read into memory of its own; the
// stream goes on right after it.
func TestReaderLargeMessageThenSmall(t *testing.T) {
	large := msg('d', 100)
	small := msg('Z', 1)
	rd := newSmallReader(bytes.NewReader(append(append([]byte{}, large...), small...)), 0, 16)
	got, err := rd.ReadMessage()
	if err != nil || !bytes.Equal(got, large) {
		t.Fatalf("large: %q, %v", got, err)
	}
	got, err = rd.ReadMessage()
	if err != nil || !bytes.Equal(got, small) {
		t.Fatalf("small: %q, %v", got, err)
	}
}

func TestReaderMaxSize(t *testing.T) {
	m := msg('D', 20) // 25 bytes with the header
	tests := []struct {
		name    string
		max     int
		wantErr bool
	}{
		{name: "exactly max", max: 25},
		{name: "one over max", max: 24, wantErr: true},
		{name: "default max", max: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := NewReader(bytes.NewReader(m), tt.max)
			got, err := rd.ReadMessage()
			if !tt.wantErr {
				if err != nil || !bytes.Equal(got, m) {
					t.Fatalf("got %q, %v", got, err)
				}
				return
			}
			var fe *FrameError
			if !errors.As(err, &fe) || !errors.Is(err, ErrMessageTooLarge) {
				t.Fatalf("got %v, want a *FrameError wrapping ErrMessageTooLarge", err)
			}
			if fe.Type != 'D' || fe.Length != 24 {
				t.Fatalf("FrameError type %q length %d, want 'D' 24", fe.Type, fe.Length)
			}
		})
	}
}

func TestReaderBadLength(t *testing.T) {
	for _, l := range []uint32{0, 1, 3} {
		b := []byte{'Q', 0, 0, 0, 0, 'x', 'y'}
		binary.BigEndian.PutUint32(b[1:], l)
		_, err := NewReader(bytes.NewReader(b), 0).ReadMessage()
		var fe *FrameError
		if !errors.As(err, &fe) || fe.Length != int64(l) || fe.Type != 'Q' {
			t.Fatalf("length %d: got %v, want a *FrameError", l, err)
		}
	}
	// The largest length a header can carry must be refused before any
	// allocation, not overflow.
	b := []byte{'Q', 0xff, 0xff, 0xff, 0xff}
	_, err := NewReader(bytes.NewReader(b), 0).ReadMessage()
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("length 0xffffffff: got %v, want ErrMessageTooLarge", err)
	}
}

func TestReaderTruncated(t *testing.T) {
	full := append(msg('Z', 1), msg('d', 100)...)
	tests := []struct {
		name  string
		data  []byte
		size  int
		reads int // messages read before the error
		want  error
	}{
		{name: "empty stream", data: nil, want: io.EOF},
		{name: "clean end after a message", data: full[:6], reads: 1, want: io.EOF},
		{name: "partial header", data: full[:3], want: io.ErrUnexpectedEOF},
		{name: "header only", data: full[:5], want: io.ErrUnexpectedEOF},
		{name: "partial header after a message", data: full[:8], reads: 1, want: io.ErrUnexpectedEOF},
		{name: "partial body, buffered path", data: full[:50], reads: 1, want: io.ErrUnexpectedEOF},
		{name: "partial body, large path", data: full[:50], size: 16, reads: 1, want: io.ErrUnexpectedEOF},
		{name: "large header and buffered bytes only", data: full[:16], size: 16, reads: 1, want: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, eofWithData := range []bool{false, true} {
				rd := NewReader(&chunkReader{data: tt.data, eofWithData: eofWithData}, 0)
				if tt.size > 0 {
					rd.size = tt.size
				}
				for i := range tt.reads {
					if _, err := rd.ReadMessage(); err != nil {
						t.Fatalf("message %d: %v", i, err)
					}
				}
				if _, err := rd.ReadMessage(); err != tt.want {
					t.Fatalf("eofWithData=%v: got %v, want %v", eofWithData, err, tt.want)
				}
			}
		})
	}
}

// A read error other than EOF is returned as it is, so the caller can tell a
// reset connection from a truncated stream.
func TestReaderPassesReadErrors(t *testing.T) {
	boom := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(msg('D', 3)[:4]), iotestErrReader{boom})
	if _, err := NewReader(r, 0).ReadMessage(); !errors.Is(err, boom) {
		t.Fatalf("got %v, want %v", err, boom)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestReaderHasMessage(t *testing.T) {
	a, b := msg('D', 10), msg('C', 3)
	src := &chunkReader{data: append(append([]byte{}, a...), b...)}
	rd := NewReader(src, 0)
	if rd.HasMessage() || rd.Buffered() != 0 {
		t.Fatal("a new reader has nothing buffered")
	}
	if _, err := rd.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if !rd.HasMessage() || rd.Buffered() != len(b) {
		t.Fatalf("after the first message: HasMessage %v, Buffered %d, want true, %d", rd.HasMessage(), rd.Buffered(), len(b))
	}
	reads := src.reads
	if _, err := rd.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if src.reads != reads {
		t.Fatal("ReadMessage read from the stream although HasMessage said a message was buffered")
	}
	if rd.HasMessage() {
		t.Fatal("nothing left, HasMessage must be false")
	}

	// Partial header and partial body: not a message yet.
	for _, n := range []int{1, 4, 5, len(a) - 1} {
		rd := NewReader(&chunkReader{data: a[:n]}, 0)
		rd.ReadMessage() // buffers what there is, then fails
		if rd.HasMessage() {
			t.Fatalf("%d bytes of a %d-byte message buffered: HasMessage must be false", n, len(a))
		}
	}
}

func TestReaderReleaseBuffer(t *testing.T) {
	a, b := msg('D', 10), msg('C', 3)

	// Nothing buffered: the buffer goes, and comes back on the next read.
	rd := NewReader(bytes.NewReader(a), 0)
	rd.ReleaseBuffer() // before any read: a no-op
	if _, err := rd.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	rd.ReleaseBuffer()
	if rd.buf != nil {
		t.Fatal("ReleaseBuffer kept the buffer although nothing was buffered")
	}
	rd.Reset(bytes.NewReader(b))
	got, err := rd.ReadMessage()
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("after ReleaseBuffer: %q, %v", got, err)
	}

	// Something buffered: the buffer and its bytes stay.
	rd = NewReader(bytes.NewReader(append(append([]byte{}, a...), b...)), 0)
	if _, err := rd.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	rd.ReleaseBuffer()
	if rd.buf == nil || rd.Buffered() != len(b) {
		t.Fatal("ReleaseBuffer dropped buffered bytes")
	}
	got, err = rd.ReadMessage()
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("after ReleaseBuffer with bytes buffered: %q, %v", got, err)
	}

	// An idle reader costs no read memory, and reading again costs exactly
	// the one buffer.
	rd = NewReader(nil, 0)
	allocs := testing.AllocsPerRun(100, func() {
		rd.Reset(bytes.NewReader(a))
		if _, err := rd.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		rd.ReleaseBuffer()
	})
	// One for the buffer, one for the bytes.Reader escaping to the heap.
	if allocs > 2 {
		t.Fatalf("read + ReleaseBuffer: %.0f allocations, want at most 2", allocs)
	}
}

// A pooled Reader frames small messages in its own buffer, borrows for a
// large message or a burst, and gives the borrowed buffer back only when
// nothing is buffered.
func TestPooledReader(t *testing.T) {
	pool := NewBufferPool(1024)
	small, large := msg('Q', 40), msg('D', 600)
	var stream []byte
	stream = append(stream, small...)
	stream = append(stream, large...)
	for range 20 {
		stream = append(stream, small...) // a burst: 900 bytes
	}
	rd := NewPooledReader(&chunkReader{data: stream}, 0, pool)

	want := [][]byte{small, large}
	for range 20 {
		want = append(want, small)
	}
	for i, w := range want {
		got, err := rd.ReadMessage()
		if err != nil || !bytes.Equal(got, w) {
			t.Fatalf("message %d: %q, %v", i, got, err)
		}
		switch {
		case i == 0 && rd.bufp != nil:
			t.Fatal("borrowed for a message that fits the small buffer")
		case i == 1 && rd.bufp == nil:
			t.Fatal("a 605-byte message did not borrow")
		}
		if i == 1 {
			rd.ReleaseBuffer() // bytes of the burst are buffered: keeps it
			if rd.bufp == nil {
				t.Fatal("ReleaseBuffer gave back a buffer that held unread bytes")
			}
		}
	}
	rd.ReleaseBuffer()
	if rd.bufp != nil || len(rd.buf) != smallBufSize {
		t.Fatal("ReleaseBuffer with nothing buffered kept the borrowed buffer")
	}

	// Idle and reading small messages: no allocation at all.
	src := &chunkReader{}
	rd = NewPooledReader(src, 0, pool)
	allocs := testing.AllocsPerRun(100, func() {
		src.data = small
		if _, err := rd.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		rd.ReleaseBuffer()
	})
	if allocs != 0 {
		t.Fatalf("small message + ReleaseBuffer: %.0f allocations, want 0", allocs)
	}
}

// Reset keeps the buffer but drops unread bytes of the old stream.
func TestReaderReset(t *testing.T) {
	a, b := msg('D', 10), msg('C', 3)
	rd := NewReader(bytes.NewReader(append(append([]byte{}, a...), a...)), 0)
	if _, err := rd.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	rd.Reset(bytes.NewReader(b))
	if rd.Buffered() != 0 {
		t.Fatal("Reset kept unread bytes")
	}
	got, err := rd.ReadMessage()
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("after Reset: %q, %v", got, err)
	}
}

// FuzzReader checks ReadMessage against a model of the framing: the
// messages come back exactly as they are in the stream, never longer than
// the limit; a bad header is a *FrameError; a stream cut inside a message is
// io.ErrUnexpectedEOF and one cut between messages io.EOF. It also checks
// that HasMessage never promises a message that ReadMessage must block for.
// bufSize (the Reader's buffer) and chunk (how the stream is split into
// reads) drive the compaction and large-message paths; the top bit of
// bufSize makes it a pooled Reader (NewPooledReader), whose small buffer
// and borrowed one add their own boundaries.
func FuzzReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, max uint16, bufSize uint16, chunk uint8) {
		limit := int(max)%2048 + 1
		src := &chunkReader{data: data, chunk: int(chunk & 0x1f), eofWithData: chunk&0x80 != 0}
		release := chunk&0x40 != 0
		var rd *Reader
		switch {
		case bufSize&0x8000 != 0:
			// Borrowed buffers are larger than the small one, as in
			// the proxy (4 KiB against 256 bytes).
			rd = NewPooledReader(src, limit, NewBufferPool(smallBufSize+1+int(bufSize)%600))
		case bufSize != 0:
			rd = newSmallReader(src, limit, 5+int(bufSize)%300)
		default:
			rd = newSmallReader(src, limit, defaultBufSize)
		}

		off := 0
		for i := 0; ; i++ {
			has := rd.HasMessage()
			reads := src.reads
			m, err := rd.ReadMessage()
			if has && src.reads != reads {
				t.Fatalf("message %d: HasMessage was true but ReadMessage read from the stream", i)
			}
			rest := data[off:]
			switch {
			case len(rest) == 0:
				if err != io.EOF {
					t.Fatalf("message %d at the end of the stream: got %v, want io.EOF", i, err)
				}
				return
			case len(rest) < 5:
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("message %d, %d bytes left: got %v, want io.ErrUnexpectedEOF", i, len(rest), err)
				}
				return
			}
			l := int64(binary.BigEndian.Uint32(rest[1:]))
			var fe *FrameError
			switch {
			case l < 4:
				if !errors.As(err, &fe) || fe.Length != l || fe.Type != rest[0] {
					t.Fatalf("message %d, length %d: got %v, want a *FrameError", i, l, err)
				}
				return
			case l+1 > int64(limit):
				if !errors.As(err, &fe) || !errors.Is(err, ErrMessageTooLarge) || fe.Length != l {
					t.Fatalf("message %d, length %d over %d: got %v, want ErrMessageTooLarge", i, l, limit, err)
				}
				return
			case int64(len(rest)) < l+1:
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("message %d, length %d, %d bytes left: got %v, want io.ErrUnexpectedEOF", i, l, len(rest), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("message %d: unexpected error %v", i, err)
			}
			if len(m) > limit {
				t.Fatalf("message %d: %d bytes, over the limit %d", i, len(m), limit)
			}
			if !bytes.Equal(m, rest[:l+1]) {
				t.Fatalf("message %d: got %q, want %q", i, m, rest[:l+1])
			}
			off += int(l + 1)
			if rd.Buffered() < 0 || rd.Buffered() > len(data)-off {
				t.Fatalf("message %d: Buffered %d with %d bytes left in the stream", i, rd.Buffered(), len(data)-off)
			}
			if release {
				rd.ReleaseBuffer()
			}
		}
	})
}
