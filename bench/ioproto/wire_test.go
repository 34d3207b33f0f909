package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func msg(typ byte, body string) []byte { return appendMsg(nil, typ, []byte(body)) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestFramerScan(t *testing.T) {
	big := msg('D', string(bytes.Repeat([]byte{'x'}, 3*bufSize)))
	tests := []struct {
		name       string
		fromClient bool
		in         []byte
		want       scan
	}{
		{name: "simple query", fromClient: true, in: msg('Q', "SELECT 1\x00"), want: scan{n: 14, syncs: 1}},
		{
			name: "extended batch", fromClient: true,
			in:   cat(msg('P', "\x00SELECT 1\x00\x00\x00"), msg('B', "\x00\x00\x00\x00\x00\x00\x00\x00"), msg('E', "\x00\x00\x00\x00\x00"), msg('S', "")),
			want: scan{n: 17 + 13 + 10 + 5, syncs: 1},
		},
		{name: "cut header waits", fromClient: true, in: cat(msg('Q', "x\x00"), []byte{'Q', 0, 0}), want: scan{n: 7, syncs: 1}},
		{name: "cut body goes through", fromClient: true, in: msg('Q', "SELECT 1\x00")[:8], want: scan{n: 8, syncs: 1}},
		{name: "terminate stops", fromClient: true, in: cat(msg('Q', "x\x00"), msg('X', ""), msg('Q', "y\x00")), want: scan{n: 7, syncs: 1, terminate: true}},
		{name: "server S is ParameterStatus", in: cat(msg('S', "a\x00b\x00"), msg('Z', "I")), want: scan{n: 9 + 6, ready: 1, status: 'I'}},
		{
			name: "answer", in: cat(msg('T', "..."), msg('D', "...."), msg('C', "SELECT 1\x00"), msg('Z', "T")),
			want: scan{n: 8 + 9 + 14 + 6, ready: 1, status: 'T'},
		},
		{name: "cut ReadyForQuery waits", in: cat(msg('C', "x\x00"), msg('Z', "I")[:5]), want: scan{n: 7}},
		{name: "two ReadyForQuery, last status wins", in: cat(msg('Z', "T"), msg('Z', "I")), want: scan{n: 12, ready: 2, status: 'I'}},
		{name: "large message streams", in: big[:bufSize], want: scan{n: bufSize}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := framer{fromClient: tt.fromClient}
			got, err := f.scan(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("scan = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestFramerByteAtATime feeds a stream in every possible piece size and
// checks that the messages seen and the bytes let through do not depend on
// where reads end.
func TestFramerByteAtATime(t *testing.T) {
	stream := cat(msg('1', ""), msg('2', ""), msg('T', "rowdesc"), msg('D', string(bytes.Repeat([]byte{'z'}, 300))),
		msg('C', "SELECT 1\x00"), msg('Z', "T"), msg('N', "notice"), msg('C', "COMMIT\x00"), msg('Z', "I"))
	for piece := 1; piece <= len(stream); piece++ {
		var f framer
		var total scan
		var buf []byte
		for off := 0; off < len(stream); off += piece {
			buf = append(buf, stream[off:min(off+piece, len(stream))]...)
			s, err := f.scan(buf)
			if err != nil {
				t.Fatalf("piece %d: %v", piece, err)
			}
			total.n += s.n
			total.ready += s.ready
			if s.ready > 0 {
				total.status = s.status
			}
			buf = buf[s.n:]
		}
		if want := (scan{n: len(stream), ready: 2, status: 'I'}); total != want || len(buf) != 0 {
			t.Fatalf("piece %d: total %+v, %d bytes left; want %+v", piece, total, len(buf), want)
		}
	}
}

func TestFramerBadLength(t *testing.T) {
	for _, tt := range []struct {
		name       string
		fromClient bool
		in         []byte
	}{
		{"length 3", true, cat(msg('Q', "x\x00"), []byte{'Q', 0, 0, 0, 3})},
		{"ReadyForQuery of length 6", false, []byte{'Z', 0, 0, 0, 6, 'I', 'I'}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := framer{fromClient: tt.fromClient}
			_, err := f.scan(tt.in)
			if !errors.Is(err, errBadLength) {
				t.Fatalf("err = %v, want errBadLength", err)
			}
		})
	}
}

func TestFramerAllocations(t *testing.T) {
	stream := cat(msg('T', "rowdesc"), msg('D', "row"), msg('C', "SELECT 1\x00"), msg('Z', "I"))
	f := framer{}
	if n := testing.AllocsPerRun(100, func() { f.scan(stream) }); n != 0 {
		t.Fatalf("scan allocates %.0f times", n)
	}
}

func TestReleaseRule(t *testing.T) {
	tests := []struct {
		name  string
		steps func(*txn)
		want  bool
	}{
		{"fresh login", func(*txn) {}, true},
		{"query in flight", func(x *txn) { x.sent(1) }, false},
		{"answered idle", func(x *txn) { x.sent(1); x.answered(scan{ready: 1, status: 'I'}) }, true},
		{"answered in transaction", func(x *txn) { x.sent(1); x.answered(scan{ready: 1, status: 'T'}) }, false},
		{"failed transaction", func(x *txn) { x.sent(1); x.answered(scan{ready: 1, status: 'E'}) }, false},
		{"two syncs, one answered", func(x *txn) { x.sent(2); x.answered(scan{ready: 1, status: 'I'}) }, false},
		{"two syncs, both answered", func(x *txn) { x.sent(2); x.answered(scan{ready: 2, status: 'I'}) }, true},
		{"commit after transaction", func(x *txn) {
			x.sent(1)
			x.answered(scan{ready: 1, status: 'T'})
			x.sent(1)
			x.answered(scan{ready: 1, status: 'I'})
		}, true},
		{"bytes without ReadyForQuery change nothing", func(x *txn) {
			x.sent(1)
			x.answered(scan{ready: 1, status: 'T'})
			x.answered(scan{n: 40})
		}, false},
		{"Parse and Flush, no Sync", func(x *txn) { x.sent(0) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newTxn()
			tt.steps(&x)
			if got := x.releasable(); got != tt.want {
				t.Errorf("releasable = %v, want %v (%+v)", got, tt.want, x)
			}
		})
	}
}

func startupPacket(code uint32, rest string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(rest)))
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, rest...)
}

func TestParseStartup(t *testing.T) {
	startup := startupPacket(codeProtocol3, "user\x00bench\x00\x00")
	tests := []struct {
		name    string
		in      []byte
		act     startupAction
		n       int
		wantErr bool
	}{
		{name: "empty", in: nil, act: startupNeedMore},
		{name: "SSLRequest", in: startupPacket(codeSSLRequest, ""), act: startupDeclineSSL, n: 8},
		{name: "GSSENCRequest", in: startupPacket(codeGSSENCRequest, ""), act: startupDeclineSSL, n: 8},
		{name: "startup", in: startup, act: startupGreet, n: len(startup)},
		{name: "cut startup", in: startup[:len(startup)-1], act: startupNeedMore},
		{name: "cancel", in: startupPacket(codeCancelRequest, "12345678"), act: startupClose, n: 16},
		{name: "unknown code", in: startupPacket(1234, ""), act: startupClose, n: 8, wantErr: true},
		{name: "too long", in: startupPacket(codeProtocol3, string(make([]byte, maxStartupLen))), act: startupClose, wantErr: true},
		{name: "length below 8", in: []byte{0, 0, 0, 4, 0, 0, 0, 0}, act: startupClose, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			act, n, err := parseStartup(tt.in)
			if act != tt.act || n != tt.n || (err != nil) != tt.wantErr {
				t.Errorf("parseStartup = %v, %d, %v; want %v, %d, error %v", act, n, err, tt.act, tt.n, tt.wantErr)
			}
		})
	}
}

func TestGreeting(t *testing.T) {
	g := greeting([][2]string{{"server_version", "15.0"}})
	var f framer
	s, err := f.scan(g)
	if err != nil {
		t.Fatal(err)
	}
	if s.n != len(g) || s.ready != 1 || s.status != 'I' {
		t.Fatalf("greeting scans as %+v, want all %d bytes ending in ReadyForQuery idle", s, len(g))
	}
	if !bytes.HasPrefix(g, []byte{'R', 0, 0, 0, 8, 0, 0, 0, 0}) || !bytes.Contains(g, []byte("server_version\x0015.0\x00")) {
		t.Fatalf("greeting %q lacks AuthenticationOk or the parameter", g)
	}
}
