package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
	// Params holds the StartupMessage parameters in the order sent
	// (user, database, options, application_name, ...).
	Params []Param
	// ProcessID and SecretKey are set for a CancelRequest.
	ProcessID uint32
	SecretKey uint32
}

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
		if len(rest) != 8 {
			return nil, &ProtocolError{Code: "08P01", Msg: "invalid cancel request length"}
		}
		return &Startup{
			Kind:      CancelRequest,
			ProcessID: binary.BigEndian.Uint32(rest),
			SecretKey: binary.BigEndian.Uint32(rest[4:]),
		}, nil
	case ProtocolVersion30:
		params, err := parseParams(rest)
		if err != nil {
			return nil, err
		}
		return &Startup{Kind: StartupMessage, Params: params}, nil
	}
	major, minor := code>>16, code&0xffff
	return nil, &ProtocolError{
		Code: "0A000",
		Msg:  fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0", major, minor),
	}
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
