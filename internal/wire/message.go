package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// Message is one complete protocol message as it travels on the wire: the
// type byte, the 4-byte length, and the body. Forwarding a message means
// writing these bytes unchanged.
type Message []byte

// Type is the message's type byte.
func (m Message) Type() byte { return m[0] }

// Body is the message without its 5-byte header.
func (m Message) Body() []byte { return m[5:] }

// SessionMessage reports whether t is a message type a client may send
// once logged in (PostgreSQL's PostgresMain loop); any other type,
// PasswordMessage included, ends a PostgreSQL session with 08P01
// "invalid frontend message type".
func SessionMessage(t byte) bool {
	switch t {
	case MsgBind, MsgClose, MsgCopyData, MsgCopyDone, MsgCopyFail, MsgDescribe, MsgExecute,
		MsgFlush, MsgFunctionCall, MsgParse, MsgQuery, MsgSync, MsgTerminate:
		return true
	}
	return false
}

// Message type bytes (PostgreSQL docs, "Message Formats", 55.7).
const (
	// Frontend.
	MsgBind         = 'B'
	MsgClose        = 'C' // frontend Close; backend CommandComplete
	MsgCopyData     = 'd'
	MsgCopyDone     = 'c'
	MsgCopyFail     = 'f'
	MsgDescribe     = 'D' // frontend Describe; backend DataRow
	MsgExecute      = 'E' // frontend Execute; backend ErrorResponse
	MsgFlush        = 'H' // frontend Flush; backend CopyBothResponse
	MsgFunctionCall = 'F'
	MsgParse        = 'P'
	MsgPassword     = 'p'
	MsgQuery        = 'Q'
	MsgSync         = 'S' // frontend Sync; backend ParameterStatus
	MsgTerminate    = 'X'
	// Backend.
	MsgAuthentication           = 'R'
	MsgBackendKeyData           = 'K'
	MsgBindComplete             = '2'
	MsgCloseComplete            = '3'
	MsgCommandComplete          = 'C'
	MsgCopyInResponse           = 'G'
	MsgCopyOutResponse          = 'H'
	MsgCopyBothResponse         = 'W'
	MsgDataRow                  = 'D'
	MsgEmptyQueryResponse       = 'I'
	MsgErrorResponse            = 'E'
	MsgNegotiateProtocolVersion = 'v'
	MsgNoData                   = 'n'
	MsgNoticeResponse           = 'N'
	MsgNotification             = 'A'
	MsgParameterDescription     = 't'
	MsgParameterStatus          = 'S'
	MsgParseComplete            = '1'
	MsgPortalSuspended          = 's'
	MsgReadyForQuery            = 'Z'
	MsgRowDescription           = 'T'
)

// Transaction status bytes carried by ReadyForQuery.
const (
	TxIdle   = 'I'
	TxActive = 'T'
	TxFailed = 'E'
)

var errShort = errors.New("message body too short")

// ReadyForQueryStatus returns the transaction status of a ReadyForQuery.
func ReadyForQueryStatus(m Message) (byte, error) {
	if len(m) < 6 {
		return 0, errShort
	}
	return m[5], nil
}

// ParameterStatus splits a ParameterStatus body into name and value. The
// returned slices alias m.
func ParameterStatus(m Message) (name, value []byte, err error) {
	b := m.Body()
	name, b, ok := cstring(b)
	if !ok {
		return nil, nil, errShort
	}
	value, _, ok = cstring(b)
	if !ok {
		return nil, nil, errShort
	}
	return name, value, nil
}

// ErrorFields are the fields of an ErrorResponse or NoticeResponse the proxy
// looks at. The slices alias the message.
type ErrorFields struct {
	Severity []byte // 'V' (non-localised) or 'S'
	Code     []byte // 'C': SQLSTATE
	Message  []byte // 'M'
}

// ParseError extracts the fields of an ErrorResponse or NoticeResponse
// without allocating.
func ParseError(m Message) (ErrorFields, error) {
	var f ErrorFields
	b := m.Body()
	for len(b) > 0 && b[0] != 0 {
		code := b[0]
		val, rest, ok := cstring(b[1:])
		if !ok {
			return f, errShort
		}
		switch code {
		case 'V':
			f.Severity = val
		case 'S':
			if f.Severity == nil {
				f.Severity = val
			}
		case 'C':
			f.Code = val
		case 'M':
			f.Message = val
		}
		b = rest
	}
	return f, nil
}

// StatementName returns the prepared-statement or portal name a frontend
// message names, and which kind it is: Parse names a statement; Bind names a
// portal and a statement; Describe and Close carry 'S' or 'P' then a name;
// Execute names a portal. The slices alias m.
func StatementName(m Message) (name []byte, ok bool) {
	name, _, ok = cstring(m.Body())
	return name, ok
}

func cstring(b []byte) (s, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// AppendHeader appends a message header with a placeholder length; finish
// with FinishMessage(dst, start).
func AppendHeader(dst []byte, typ byte) (out []byte, start int) {
	start = len(dst)
	return append(dst, typ, 0, 0, 0, 0), start
}

// FinishMessage writes the length of the message that starts at start.
func FinishMessage(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst
}

// AppendReadyForQuery appends a ReadyForQuery with the given status.
func AppendReadyForQuery(dst []byte, status byte) []byte {
	return append(dst, MsgReadyForQuery, 0, 0, 0, 5, status)
}

// AppendQuery appends a simple Query message.
func AppendQuery(dst []byte, sql string) []byte {
	dst, start := AppendHeader(dst, MsgQuery)
	dst = append(dst, sql...)
	dst = append(dst, 0)
	return FinishMessage(dst, start)
}

// AppendParameterStatus appends a ParameterStatus message.
func AppendParameterStatus(dst []byte, name, value string) []byte {
	dst, start := AppendHeader(dst, MsgParameterStatus)
	dst = append(dst, name...)
	dst = append(dst, 0)
	dst = append(dst, value...)
	dst = append(dst, 0)
	return FinishMessage(dst, start)
}

// Severity of an error the proxy generates.
const (
	SeverityError = "ERROR"
	SeverityFatal = "FATAL"
)

// AppendError appends an ErrorResponse with severity, SQLSTATE code and
// message (PostgreSQL docs 55.8, "Error and Notice Message Fields"). Both the
// localised 'S' and non-localised 'V' severities are sent, as PostgreSQL 9.6+
// does.
func AppendError(dst []byte, severity, code, msg string) []byte {
	dst, start := AppendHeader(dst, MsgErrorResponse)
	dst = append(dst, 'S')
	dst = append(dst, severity...)
	dst = append(dst, 0, 'V')
	dst = append(dst, severity...)
	dst = append(dst, 0, 'C')
	dst = append(dst, code...)
	dst = append(dst, 0, 'M')
	dst = append(dst, msg...)
	dst = append(dst, 0, 0)
	return FinishMessage(dst, start)
}

// AppendNotice appends a NoticeResponse with severity NOTICE or WARNING.
func AppendNotice(dst []byte, severity, code, msg string) []byte {
	start := len(dst)
	dst = AppendError(dst, severity, code, msg)
	dst[start] = MsgNoticeResponse
	return dst
}
