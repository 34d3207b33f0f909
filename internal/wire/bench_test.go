package wire_test

import (
	"bytes"
	"io"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// typicalResponse is the backend side of a small SELECT: RowDescription,
// rows DataRows of three columns, CommandComplete and ReadyForQuery.
func typicalResponse(tb testing.TB, rows int) []byte {
	tb.Helper()
	var b []byte
	var err error
	b, err = (&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("aid"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1},
		{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1},
		{Name: []byte("filler"), DataTypeOID: 1042, DataTypeSize: -1, TypeModifier: 88},
	}}).Encode(b)
	if err != nil {
		tb.Fatal(err)
	}
	filler := bytes.Repeat([]byte{' '}, 84)
	for i := range rows {
		b, err = (&pgproto3.DataRow{Values: [][]byte{[]byte(strconv.Itoa(i)), []byte("0"), filler}}).Encode(b)
		if err != nil {
			tb.Fatal(err)
		}
	}
	b, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SELECT " + strconv.Itoa(rows))}).Encode(b)
	b, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(b)
	return b
}

// BenchmarkReaderReadMessage reads typical server messages from memory: the
// proxy's per-message framing cost, which must not allocate.
func BenchmarkReaderReadMessage(b *testing.B) {
	var data []byte
	for len(data) < 1<<20 {
		data = append(data, typicalResponse(b, 100)...)
	}
	src := bytes.NewReader(data)
	rd := wire.NewReader(src, 0)
	// Average message size, for MB/s.
	n := 0
	for {
		if _, err := rd.ReadMessage(); err != nil {
			break
		}
		n++
	}
	b.SetBytes(int64(len(data) / n))
	src.Reset(data)
	rd.Reset(src)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m, err := rd.ReadMessage()
		if err == io.EOF {
			src.Reset(data)
			rd.Reset(src)
			m, err = rd.ReadMessage()
		}
		if err != nil {
			b.Fatal(err)
		}
		if m.Type() == wire.MsgReadyForQuery {
			if _, err := wire.ReadyForQueryStatus(m); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkParseError is the decode the proxy does on every ErrorResponse.
func BenchmarkParseError(b *testing.B) {
	m := wire.Message(wire.AppendError(nil, wire.SeverityError, "57P01", "terminating connection due to administrator command"))
	b.ReportAllocs()
	for b.Loop() {
		f, err := wire.ParseError(m)
		if err != nil || len(f.Code) != 5 {
			b.Fatal(f, err)
		}
	}
}
