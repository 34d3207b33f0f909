package main

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Message types the forwarders look at (PostgreSQL 15 docs, "Message
// Formats"). Everything else is forwarded as bytes.
const (
	msgQuery     = 'Q' // client: simple query, ends a batch
	msgSync      = 'S' // client: Sync, ends an extended-protocol batch
	msgTerminate = 'X' // client: Terminate
	msgReady     = 'Z' // server: ReadyForQuery, one per Query or Sync
)

// Startup codes (PostgreSQL 15 docs, "Message Formats": SSLRequest,
// GSSENCRequest, CancelRequest, StartupMessage).
const (
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
	codeCancelRequest = 80877102
	codeProtocol3     = 196608
)

// maxStartupLen bounds a startup packet, as PostgreSQL does
// (MAX_STARTUP_PACKET_LENGTH in src/include/libpq/pqcomm.h).
const maxStartupLen = 10000

// headerLen is a typed message's header: the type byte and the int32
// length, which counts itself but not the type byte.
const headerLen = 5

var errBadLength = errors.New("message length below 4")

// scan is what a framer found in the bytes it let through.
type scan struct {
	// n is how many bytes at the start of the input may be forwarded now:
	// whole messages, and the part of a message body that is not looked at.
	n int
	// syncs counts the Query and Sync messages let through (client side).
	syncs int
	// ready counts the ReadyForQuery messages let through, and status is
	// the transaction status of the last one (server side).
	ready  int
	status byte
	// terminate is set when a Terminate follows the n bytes; it is not
	// included in them.
	terminate bool
}

// framer finds message boundaries in one direction of a connection
// without copying: it reads each 5-byte header and lets the body through
// unread, except for the one message it must decode, ReadyForQuery. A body
// may be let through in pieces, so a message larger than any buffer
// streams through it. The zero value is ready; fromClient says which
// direction it frames (a client's 'S' is Sync, a server's 'S' is
// ParameterStatus).
type framer struct {
	fromClient bool
	skip       int // bytes of the current body still to let through
}

// scan looks at b, the bytes not yet forwarded, and says how many may be
// forwarded and what they hold. A header cut by the end of b, or a
// ReadyForQuery whose body is not complete, is left for the next call with
// more bytes.
func (f *framer) scan(b []byte) (scan, error) {
	var s scan
	i := 0
	for i < len(b) {
		if f.skip > 0 {
			k := min(f.skip, len(b)-i)
			i += k
			f.skip -= k
			continue
		}
		if len(b)-i < headerLen {
			break
		}
		typ := b[i]
		l := int(binary.BigEndian.Uint32(b[i+1:]))
		if l < 4 {
			s.n = i
			return s, fmt.Errorf("%w: type %q length %d", errBadLength, typ, l)
		}
		if f.fromClient {
			switch typ {
			case msgTerminate:
				s.n, s.terminate = i, true
				return s, nil
			case msgQuery, msgSync:
				s.syncs++
			}
		} else if typ == msgReady {
			if l != 5 {
				s.n = i
				return s, fmt.Errorf("%w: ReadyForQuery of length %d", errBadLength, l)
			}
			if len(b)-i < 1+l {
				break
			}
			s.ready++
			s.status = b[i+headerLen]
			i += 1 + l
			continue
		}
		i += headerLen
		f.skip = l - 4
	}
	s.n = i
	return s, nil
}

// txn is the release rule of transaction mode for one server connection:
// it goes back to the pool when everything sent has been answered (one
// ReadyForQuery per Query or Sync) and the last ReadyForQuery says idle,
// not in a transaction ('T') or a failed one ('E'). This is the rule of
// PgBouncer's transaction mode and of internal/router's releasableLocked,
// without the router's extra conditions (pending proxy work, COPY, LISTEN).
type txn struct {
	pending int  // Query and Sync messages sent and not yet answered
	status  byte // of the last ReadyForQuery; 'I' after a login
}

func newTxn() txn { return txn{status: 'I'} }

// sent records n Query or Sync messages written to the server.
func (t *txn) sent(n int) { t.pending += n }

// answered records what a framer saw in the server's bytes.
func (t *txn) answered(s scan) {
	if s.ready == 0 {
		return
	}
	t.pending = max(0, t.pending-s.ready)
	t.status = s.status
}

// releasable reports whether the server connection may go back.
func (t *txn) releasable() bool { return t.pending == 0 && t.status == 'I' }

// appendMsg appends a typed message with body to dst.
func appendMsg(dst []byte, typ byte, body []byte) []byte {
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint32(dst, uint32(4+len(body)))
	return append(dst, body...)
}

// greeting is what every client gets after its StartupMessage:
// AuthenticationOk, the ParameterStatus messages of a server login,
// BackendKeyData and ReadyForQuery idle. params is in a fixed order so
// that the greeting is the same for every run.
func greeting(params [][2]string) []byte {
	var b []byte
	b = appendMsg(b, 'R', []byte{0, 0, 0, 0})
	for _, p := range params {
		body := append(append(append([]byte(p[0]), 0), p[1]...), 0)
		b = appendMsg(b, 'S', body)
	}
	// A fixed cancel key: the prototypes forward no CancelRequest.
	b = appendMsg(b, 'K', []byte{0, 0, 0, 1, 0, 0, 0, 1})
	return appendMsg(b, msgReady, []byte{'I'})
}

// startupAction is what to do with one complete startup packet.
type startupAction int

const (
	startupNeedMore   startupAction = iota // not a whole packet yet
	startupDeclineSSL                      // answer 'N' and wait for the next packet
	startupGreet                           // answer with the greeting; the client is logged in
	startupClose                           // CancelRequest or something else: close
)

// parseStartup looks at the untyped packet at the start of b (int32
// length, int32 code, ...) and returns what to do and its length.
func parseStartup(b []byte) (startupAction, int, error) {
	if len(b) < 8 {
		return startupNeedMore, 0, nil
	}
	l := int(binary.BigEndian.Uint32(b))
	if l < 8 || l > maxStartupLen {
		return startupClose, 0, fmt.Errorf("startup packet of length %d", l)
	}
	if len(b) < l {
		return startupNeedMore, 0, nil
	}
	switch code := binary.BigEndian.Uint32(b[4:]); code {
	case codeSSLRequest, codeGSSENCRequest:
		return startupDeclineSSL, l, nil
	case codeProtocol3:
		return startupGreet, l, nil
	case codeCancelRequest:
		return startupClose, l, nil
	default:
		return startupClose, l, fmt.Errorf("startup code %d", code)
	}
}
