package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Codes of the untyped first packet (PostgreSQL docs 55.7: StartupMessage,
// SSLRequest, GSSENCRequest, CancelRequest).
const (
	ProtocolVersion30 = 196608 // 3.0
	CodeCancel        = 80877102
	CodeSSLRequest    = 80877103
	CodeGSSENCRequest = 80877104
)

// MaxStartupSize bounds a startup packet. PostgreSQL uses MAX_STARTUP_PACKET_LENGTH
// = 10000 (src/include/libpq/pqcomm.h); so do we.
const MaxStartupSize = 10000

// StartupKind says what the client's first packet asks for.
type StartupKind int

// The kinds of first packet.
const (
	StartupMessage StartupKind = iota + 1
	SSLRequest
	GSSENCRequest
	CancelRequest
)

// Startup is a parsed first packet.
type Startup struct {
	Kind StartupKind
	// MinorVersion is the protocol minor version a StartupMessage asked
	// for: 0 for 3.0, 2 for 3.2 (libpq 18, pgx may ask). The proxy speaks
	// 3.0; a client asking for more is told so with NegotiateProtocolVersion
	// (see NeedsNegotiation).
	MinorVersion uint16
	// Params holds the StartupMessage parameters in the order sent
	// (user, database, options, application_name, ...), without the
	// protocol options.
	Params []Param
	// ProtocolOptions are the parameters named "_pq_.<name>": requests to
	// change the protocol itself, not run-time parameters (PostgreSQL docs,
	// "Protocol versions" in 55.1). The proxy knows none of them.
	ProtocolOptions []Param
	// ProcessID and Key are set for a CancelRequest. Key is the secret
	// key as sent: 4 bytes in protocol 3.0, up to MaxCancelKeyLen from 3.2
	// on. SecretKey is Key as a number when it is 4 bytes long, else 0.
	ProcessID uint32
	SecretKey uint32
	Key       []byte
}

// MaxCancelKeyLen is the longest secret key a CancelRequest may carry:
// PostgreSQL 18's MAX_CANCEL_KEY_LENGTH (src/include/libpq/pqcomm.h), the
// bound protocol 3.2 sets.
const MaxCancelKeyLen = 256

// NeedsNegotiation reports whether a StartupMessage asked for something
// the proxy does not speak (a newer minor version, protocol options), so
// that it must answer with NegotiateProtocolVersion before going on, as
// PostgreSQL does (ProcessStartupPacket in
// src/backend/postmaster/postmaster.c).
func (s *Startup) NeedsNegotiation() bool {
	return s.Kind == StartupMessage && (s.MinorVersion > 0 || len(s.ProtocolOptions) > 0)
}

// ErrTerminate is what ReadStartup returns when the first bytes of a
// connection are a Terminate message ('X', length 4): a client that gave
// up before it started (node-postgres' connect() then end()). There is
// nobody to answer: close quietly.
var ErrTerminate = errors.New("client sent Terminate before its startup packet")

// protocolOptionPrefix marks a protocol option among startup parameters
// (PostgreSQL docs 55.1: "_pq_." is reserved for protocol extensions).
const protocolOptionPrefix = "_pq_."

// Param is one startup parameter.
type Param struct{ Name, Value string }

// Get returns the value of a startup parameter and whether it was sent.
func (s *Startup) Get(name string) (string, bool) {
	for _, p := range s.Params {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// ProtocolError is a first packet that is not acceptable. Its message is
// fit to send to the client in a FATAL ErrorResponse (SQLSTATE 08P01, or
// 0A000 for an unsupported protocol version).
type ProtocolError struct {
	Code string
	Msg  string
}

func (e *ProtocolError) Error() string { return e.Msg }

// ReadStartup reads one untyped startup-phase packet from r.
func ReadStartup(r io.Reader) (*Startup, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return nil, err
	}
	if hdr[0] == MsgTerminate && hdr[1] == 0 && hdr[2] == 0 && hdr[3] == 0 {
		// No startup packet starts so (its length would be 1476395008):
		// this is a typed message, Terminate if its length is 4.
		if _, err := io.ReadFull(r, hdr[4:5]); err != nil {
			return nil, unexpectedEOF(err)
		}
		if hdr[4] == 4 {
			return nil, ErrTerminate
		}
	}
	length := binary.BigEndian.Uint32(hdr[:4])
	if length < 8 || length > MaxStartupSize {
		return nil, &ProtocolError{Code: "08P01", Msg: fmt.Sprintf("invalid startup packet length %d", length)}
	}
	body := make([]byte, length-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, unexpectedEOF(err)
	}
	return ParseStartup(body)
}

// ParseStartup parses a startup packet body (everything after the length).
// A CancelRequest's Key aliases body.
func ParseStartup(body []byte) (*Startup, error) {
	if len(body) < 4 {
		return nil, &ProtocolError{Code: "08P01", Msg: "invalid startup packet: too short"}
	}
	code := binary.BigEndian.Uint32(body)
	rest := body[4:]
	switch code {
	case CodeSSLRequest:
		return &Startup{Kind: SSLRequest}, nil
	case CodeGSSENCRequest:
		return &Startup{Kind: GSSENCRequest}, nil
	case CodeCancel:
		// A key of 4 (protocol 3.0) to MaxCancelKeyLen bytes, as
		// PostgreSQL 18 accepts (ProcessCancelRequestPacket): a 3.2
		// client's long key is framed right, and simply matches no key
		// the proxy gave out.
		if len(rest) < 8 || len(rest) > 4+MaxCancelKeyLen {
			return nil, &ProtocolError{Code: "08P01", Msg: "invalid length of cancel request packet"}
		}
		st := &Startup{Kind: CancelRequest, ProcessID: binary.BigEndian.Uint32(rest), Key: rest[4:len(rest):len(rest)]}
		if len(st.Key) == 4 {
			st.SecretKey = binary.BigEndian.Uint32(st.Key)
		}
		return st, nil
	}
	major, minor := code>>16, code&0xffff
	if major != ProtocolVersion30>>16 {
		// PostgreSQL's message (ProcessStartupPacket), 3.0 being both
		// the earliest and the latest version the proxy speaks.
		return nil, &ProtocolError{
			Code: "0A000",
			Msg:  fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0 to 3.0", major, minor),
		}
	}
	params, err := parseParams(rest)
	if err != nil {
		return nil, err
	}
	st := &Startup{Kind: StartupMessage, MinorVersion: uint16(minor), Params: params}
	for i := 0; i < len(st.Params); {
		if strings.HasPrefix(st.Params[i].Name, protocolOptionPrefix) {
			st.ProtocolOptions = append(st.ProtocolOptions, st.Params[i])
			st.Params = append(st.Params[:i], st.Params[i+1:]...)
			continue
		}
		i++
	}
	return st, nil
}

// AppendNegotiateProtocolVersion appends a NegotiateProtocolVersion
// message ('v', PostgreSQL docs 55.7): the newest version of protocol 3 the
// server speaks, and the protocol options it did not recognize. The docs
// call the first field the newest minor version; PostgreSQL sends the whole
// version code (PG_PROTOCOL_LATEST, 196608 for 3.0), and so do we.
func AppendNegotiateProtocolVersion(dst []byte, newest uint32, unrecognized []Param) []byte {
	dst, start := AppendHeader(dst, MsgNegotiateProtocolVersion)
	dst = binary.BigEndian.AppendUint32(dst, newest)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(unrecognized)))
	for _, o := range unrecognized {
		dst = append(dst, o.Name...)
		dst = append(dst, 0)
	}
	return FinishMessage(dst, start)
}

var errParams = &ProtocolError{Code: "08P01", Msg: "invalid startup packet layout: expected terminator as last byte"}

func parseParams(b []byte) ([]Param, error) {
	var params []Param
	for {
		if len(b) == 0 {
			return nil, errParams
		}
		if b[0] == 0 {
			if len(b) != 1 {
				return nil, errParams
			}
			break
		}
		name, rest, ok := cstring(b)
		if !ok {
			return nil, errParams
		}
		value, rest, ok := cstring(rest)
		if !ok {
			return nil, errParams
		}
		params = append(params, Param{Name: string(name), Value: string(value)})
		b = rest
	}
	return params, nil
}

// AppendStartup appends a StartupMessage with the given parameters.
func AppendStartup(dst []byte, params []Param) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, ProtocolVersion30)
	for _, p := range params {
		dst = append(dst, p.Name...)
		dst = append(dst, 0)
		dst = append(dst, p.Value...)
		dst = append(dst, 0)
	}
	dst = append(dst, 0)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}

// AppendCancelRequest appends a CancelRequest packet. The secret key is 4
// bytes in protocol 3.0 (longer ones exist from protocol 3.2 on).
func AppendCancelRequest(dst []byte, pid uint32, secret []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(12+len(secret)))
	dst = binary.BigEndian.AppendUint32(dst, CodeCancel)
	dst = binary.BigEndian.AppendUint32(dst, pid)
	return append(dst, secret...)
}

// AppendSSLRequest appends an SSLRequest packet.
func AppendSSLRequest(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, 8)
	return binary.BigEndian.AppendUint32(dst, CodeSSLRequest)
}

// IsProtocolError reports whether err is a *ProtocolError.
func IsProtocolError(err error) (*ProtocolError, bool) {
	var pe *ProtocolError
	ok := errors.As(err, &pe)
	return pe, ok
}
