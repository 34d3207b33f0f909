package fidelity

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// describe renders a backend message as one transcript line, normalising
// what legitimately differs between a direct connection and one through
// the proxy:
//
//   - The PID in a NotificationResponse is the notifying server backend's,
//     which is another process on each run; it is left out.
//   - BackendKeyData (not expected after login) is shown without its values:
//     the proxy hands out its own cancel keys.
//
// Everything else is compared as sent, including the File, Line and Routine
// fields of errors and notices: both runs talk to the same server binary,
// so a difference there means the error came from somewhere else (another
// code path on the server, or the proxy itself).
func describe(msg pgproto3.BackendMessage) string {
	switch m := msg.(type) {
	case *pgproto3.ReadyForQuery:
		return "ReadyForQuery " + string(m.TxStatus)
	case *pgproto3.CommandComplete:
		return "CommandComplete " + strconv.Quote(string(m.CommandTag))
	case *pgproto3.DataRow:
		return "DataRow " + quoteValues(m.Values)
	case *pgproto3.RowDescription:
		var b strings.Builder
		b.WriteString("RowDescription [")
		for i, f := range m.Fields {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q table=%d attnum=%d type=%d size=%d mod=%d format=%d",
				f.Name, f.TableOID, f.TableAttributeNumber, f.DataTypeOID, f.DataTypeSize, f.TypeModifier, f.Format)
		}
		return b.String() + "]"
	case *pgproto3.ParameterDescription:
		return fmt.Sprintf("ParameterDescription %v", m.ParameterOIDs)
	case *pgproto3.ErrorResponse:
		return "ErrorResponse " + errorFields(m)
	case *pgproto3.NoticeResponse:
		return "NoticeResponse " + errorFields((*pgproto3.ErrorResponse)(m))
	case *pgproto3.NotificationResponse:
		return fmt.Sprintf("NotificationResponse channel=%q payload=%q", m.Channel, m.Payload)
	case *pgproto3.ParameterStatus:
		return fmt.Sprintf("ParameterStatus %s=%q", m.Name, m.Value)
	case *pgproto3.CopyInResponse:
		return fmt.Sprintf("CopyInResponse format=%d columns=%v", m.OverallFormat, m.ColumnFormatCodes)
	case *pgproto3.CopyOutResponse:
		return fmt.Sprintf("CopyOutResponse format=%d columns=%v", m.OverallFormat, m.ColumnFormatCodes)
	case *pgproto3.CopyBothResponse:
		return fmt.Sprintf("CopyBothResponse format=%d columns=%v", m.OverallFormat, m.ColumnFormatCodes)
	case *pgproto3.CopyData:
		return "CopyData " + quoteBytes(m.Data)
	case *pgproto3.FunctionCallResponse:
		return "FunctionCallResponse " + quoteValues([][]byte{m.Result})
	case *pgproto3.BackendKeyData:
		return "BackendKeyData"
	case *pgproto3.ParseComplete, *pgproto3.BindComplete, *pgproto3.CloseComplete,
		*pgproto3.NoData, *pgproto3.EmptyQueryResponse, *pgproto3.PortalSuspended,
		*pgproto3.CopyDone:
		return typeName(msg)
	}
	// Anything else (authentication, NegotiateProtocolVersion) is
	// unexpected mid-session; show all of it.
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Sprintf("%s %+v", typeName(msg), msg)
	}
	return typeName(msg) + " " + string(b)
}

// typeName is the pgproto3 type name of msg, as Expect lines spell it.
func typeName(msg pgproto3.BackendMessage) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3.")
}

func quoteValues(vs [][]byte) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range vs {
		if i > 0 {
			b.WriteString(", ")
		}
		if v == nil {
			b.WriteString("null")
		} else {
			b.WriteString(quoteBytes(v))
		}
	}
	return b.String() + "]"
}

// maxQuoted is the longest value a transcript shows in full; longer ones
// are shown by their start, length and digest, still compared exactly.
const maxQuoted = 200

func quoteBytes(v []byte) string {
	if len(v) <= maxQuoted {
		return strconv.Quote(string(v))
	}
	return fmt.Sprintf("%s... (%d bytes, sha256 %x)", strconv.Quote(string(v[:40])), len(v), sha256.Sum256(v))
}

// errorFields renders the fields of an ErrorResponse or NoticeResponse
// with their protocol codes (PostgreSQL docs 55.8, "Error and Notice
// Message Fields"), in a fixed order.
func errorFields(m *pgproto3.ErrorResponse) string {
	fields := []struct {
		code byte
		val  string
	}{
		{'S', m.Severity}, {'V', m.SeverityUnlocalized}, {'C', m.Code}, {'M', m.Message},
		{'D', m.Detail}, {'H', m.Hint}, {'P', itoa(m.Position)}, {'p', itoa(m.InternalPosition)},
		{'q', m.InternalQuery}, {'W', m.Where}, {'s', m.SchemaName}, {'t', m.TableName},
		{'c', m.ColumnName}, {'d', m.DataTypeName}, {'n', m.ConstraintName},
		{'F', m.File}, {'L', itoa(m.Line)}, {'R', m.Routine},
	}
	var parts []string
	for _, f := range fields {
		if f.val != "" {
			parts = append(parts, fmt.Sprintf("%c=%q", f.code, f.val))
		}
	}
	var unknown []string
	for k, v := range m.UnknownFields {
		unknown = append(unknown, fmt.Sprintf("%c=%q", k, v))
	}
	sort.Strings(unknown)
	return strings.Join(append(parts, unknown...), " ")
}

func itoa(n int32) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(int(n))
}
