package admin

import (
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Type OIDs of the console's columns. PgBouncer uses text and int4 for its
// lists, int8 for a few, and numeric for its statistics (measured with pgx
// against Debian's pgbouncer 1.18, and read from 1.25's format letters in
// src/admin.c: s, i, q, N); the console sends the same, so that drivers
// scan the same Go or Python types from both.
const (
	oidText    uint32 = 25
	oidInt4    uint32 = 23
	oidInt8    uint32 = 20
	oidNumeric uint32 = 1700
)

// column is one column of a result set.
type column struct {
	name string
	oid  uint32
}

func textCol(name string) column    { return column{name, oidText} }
func int4Col(name string) column    { return column{name, oidInt4} }
func int8Col(name string) column    { return column{name, oidInt8} }
func numericCol(name string) column { return column{name, oidNumeric} }

// cols builds a column list: each name gets the type of the last type
// marker before it. It keeps the long column lists of SHOW commands
// readable next to PgBouncer's documentation.
func cols(specs ...any) []column {
	var out []column
	oid := oidText
	for _, s := range specs {
		switch v := s.(type) {
		case uint32:
			oid = v
		case string:
			out = append(out, column{v, oid})
		}
	}
	return out
}

// reply accumulates the messages answering one Query.
type reply struct {
	buf []byte
	// codes are the SQLSTATEs of the errors in buf, for
	// pauseproxy_client_errors_total.
	codes []string
	// after runs once the reply has been sent (SHUTDOWN answers before
	// the process goes).
	after []func()
}

// rows appends a result set: RowDescription, a DataRow per row and
// CommandComplete with tag. A row value is a string, an integer, nil
// (NULL), a bool (1/0, as PgBouncer), a time.Time or a time.Duration
// (seconds).
func (r *reply) rows(tag string, columns []column, rows [][]any) {
	rd := pgproto3.RowDescription{Fields: make([]pgproto3.FieldDescription, len(columns))}
	for i, c := range columns {
		size := int16(-1)
		switch c.oid {
		case oidInt4:
			size = 4
		case oidInt8:
			size = 8
		}
		rd.Fields[i] = pgproto3.FieldDescription{Name: []byte(c.name), DataTypeOID: c.oid, DataTypeSize: size, TypeModifier: -1}
	}
	r.buf, _ = rd.Encode(r.buf)
	values := make([][]byte, len(columns))
	for _, row := range rows {
		for i := range values {
			values[i] = nil
			if i < len(row) {
				values[i] = cell(row[i])
			}
		}
		r.buf, _ = (&pgproto3.DataRow{Values: values}).Encode(r.buf)
	}
	r.complete(tag)
}

// cell is a value's text form; nil for NULL.
func cell(v any) []byte {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return []byte(x)
	case int:
		return strconv.AppendInt(nil, int64(x), 10)
	case int64:
		return strconv.AppendInt(nil, x, 10)
	case uint64:
		return strconv.AppendUint(nil, x, 10)
	case bool:
		if x {
			return []byte("1")
		}
		return []byte("0")
	case time.Time:
		if x.IsZero() {
			return nil
		}
		// PgBouncer's format ("%Y-%m-%d %H:%M:%S %Z"), always in UTC.
		return []byte(x.UTC().Format("2006-01-02 15:04:05 MST"))
	case time.Duration:
		return strconv.AppendFloat(nil, x.Seconds(), 'f', 3, 64)
	}
	panic("admin: no text form for a cell value")
}

// complete appends CommandComplete.
func (r *reply) complete(tag string) {
	r.buf, _ = (&pgproto3.CommandComplete{CommandTag: []byte(tag)}).Encode(r.buf)
}

// notice appends a NoticeResponse.
func (r *reply) notice(msg, detail string) {
	n := pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: msg, Detail: detail}
	r.buf, _ = n.Encode(r.buf)
}

// fail appends an ErrorResponse for err: a *cmdError or *PauseError with
// its SQLSTATE, anything else as an internal error.
func (r *reply) fail(err error) {
	code, msg := "XX000", err.Error()
	switch e := err.(type) {
	case *cmdError:
		code, msg = e.code, e.msg
	case *PauseError:
		code, msg = e.Code, e.Msg
	}
	r.buf = wire.AppendError(r.buf, wire.SeverityError, code, msg)
	r.codes = append(r.codes, code)
}

// empty appends EmptyQueryResponse (a Query with no statement).
func (r *reply) empty() {
	r.buf, _ = (&pgproto3.EmptyQueryResponse{}).Encode(r.buf)
}

// ready appends ReadyForQuery; the console never has a transaction open.
func (r *reply) ready() {
	r.buf = wire.AppendReadyForQuery(r.buf, wire.TxIdle)
}

// cmdError is a command that failed, with its SQLSTATE.
type cmdError struct {
	code string
	msg  string
}

func (e *cmdError) Error() string { return e.msg }

func errorf(code, format string, args ...any) error {
	return &cmdError{code: code, msg: fmt.Sprintf(format, args...)}
}
