package router

import (
	"bytes"
	"encoding/binary"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Fuzz targets for the statement-name handling of transaction mode
// (stmts.go, track.go): everything here parses bytes a client or a server
// sent, so none of it may panic, whatever the bodies hold. They are in
// package router because the helpers are unexported. Seed corpora:
// testdata/fuzz/<FuzzName>/. Run one with
//
//	go test -run XXX -fuzz FuzzTrack -fuzztime 30s ./internal/router/

// withHeader makes a message of type typ around body.
func withHeader(typ byte, body []byte) wire.Message {
	m := make([]byte, 5, 5+len(body))
	m[0] = typ
	binary.BigEndian.PutUint32(m[1:], uint32(4+len(body)))
	return append(m, body...)
}

// checkFramed fails unless b is a sequence of whole messages whose length
// words match their sizes.
func checkFramed(t *testing.T, what string, b []byte) {
	t.Helper()
	rd := wire.NewReader(bytes.NewReader(b), 0)
	for {
		if _, err := rd.ReadMessage(); err == io.EOF {
			return
		} else if err != nil {
			t.Fatalf("%s: not whole messages (%v): %q", what, err, b)
		}
	}
}

// FuzzStatementNames checks parseName and bindNames on arbitrary Parse and
// Bind bodies, and that appendBindRenamed changes only the statement name.
func FuzzStatementNames(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, name string) {
		nuls := bytes.Count(body, []byte{0})

		n, rest, ok := parseName(withHeader(wire.MsgParse, body))
		if ok != (nuls >= 1) {
			t.Fatalf("parseName ok=%v with %d NULs", ok, nuls)
		}
		if ok && (bytes.IndexByte(n, 0) >= 0 || !bytes.Equal(append(append(bytes.Clone(n), 0), rest...), body)) {
			t.Fatalf("parseName split %q into %q and %q", body, n, rest)
		}

		m := withHeader(wire.MsgBind, body)
		portal, stmt, end, ok := bindNames(m)
		if ok != (nuls >= 2) {
			t.Fatalf("bindNames ok=%v with %d NULs", ok, nuls)
		}
		if !ok {
			return
		}
		if bytes.IndexByte(portal, 0) >= 0 || bytes.IndexByte(stmt, 0) >= 0 ||
			end > len(body) || string(body[:end]) != string(portal)+"\x00"+string(stmt)+"\x00" {
			t.Fatalf("bindNames split %q into %q, %q, end %d", body, portal, stmt, end)
		}

		if strings.IndexByte(name, 0) >= 0 {
			return // statement names come from C strings: never a NUL
		}
		prefix := []byte("queued")
		out := appendBindRenamed(bytes.Clone(prefix), m, portal, end, name)
		if !bytes.HasPrefix(out, prefix) {
			t.Fatal("appendBindRenamed overwrote dst")
		}
		renamed := wire.Message(out[len(prefix):])
		checkFramed(t, "renamed Bind", renamed)
		p2, s2, end2, ok := bindNames(renamed)
		if !ok || !bytes.Equal(p2, portal) || string(s2) != name || !bytes.Equal(renamed.Body()[end2:], body[end:]) {
			t.Fatalf("renamed Bind %q: portal %q stmt %q, want %q %q and the same parameters", renamed, p2, s2, portal, name)
		}
		// What a server decodes is the same Bind but for the name.
		var orig, got pgproto3.Bind
		if orig.Decode(body) == nil {
			if err := got.Decode(renamed.Body()); err != nil {
				t.Fatalf("pgproto3 decodes the client's Bind but not the renamed one: %v", err)
			}
			orig.PreparedStatement = name
			if !reflect.DeepEqual(orig, got) {
				t.Fatalf("renamed Bind decodes as %+v, want %+v", got, orig)
			}
		}
	})
}

// FuzzRenameInError rewrites the statement name in arbitrary ErrorResponse
// bodies: the result is one well-formed message whose fields are the
// original ones, with only the quoted server name in the message text
// replaced.
func FuzzRenameInError(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, server, client string) {
		if strings.ContainsRune(server+client, 0) {
			return // names from C strings
		}
		m := withHeader(wire.MsgErrorResponse, body)
		out := renameInError(m, server, client)
		checkFramed(t, "renamed error", out)
		if len(out) < 5 || out[0] != wire.MsgErrorResponse {
			t.Fatalf("renamed error %q", out)
		}
		var want pgproto3.ErrorResponse
		if want.Decode(body) != nil {
			return
		}
		var got pgproto3.ErrorResponse
		if err := got.Decode(out[5:]); err != nil {
			t.Fatalf("pgproto3 decodes the server's error but not the renamed one: %v", err)
		}
		want.Message = strings.ReplaceAll(want.Message, `"`+server+`"`, `"`+client+`"`)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("renamed error decodes as %+v, want %+v", got, want)
		}
	})
}

// FuzzTrack drives a session's statement tracking with arbitrary client
// messages (track, answerUnbound), arbitrary server messages (response)
// and new bindings on two server connections, in an order script decides.
// It checks that nothing panics and that everything the proxy would send
// (to the server or the client) is whole messages.
func FuzzTrack(f *testing.F) {
	f.Fuzz(func(t *testing.T, client, server, script []byte) {
		if len(script) == 0 {
			return
		}
		r := &Router{}
		r.conf.Store(&config.Config{Proxy: config.Proxy{MaxPreparedStatements: 1 + int(script[0]%4)}})
		var toClient bytes.Buffer // what answerUnbound writes
		s := &Session{r: r, tracking: true, cw: newClientWriter(&toClient)}
		conns := []*pool.Conn{{}, {}}
		srv := conns[0]
		crd := wire.NewReader(bytes.NewReader(client), 1<<16)
		// track asks the client reader whether a Query is streamed
		// (stream.go); messages read whole leave nothing remaining.
		s.crd = crd
		srd := wire.NewReader(bytes.NewReader(server), 1<<16)
		bound := true
		for i, op := range script[1:] {
			switch op % 4 {
			case 0, 3: // a client message
				m, err := crd.ReadMessage()
				if err != nil {
					continue
				}
				if !bound || op%4 == 3 {
					if s.answerUnbound(m) {
						continue
					}
				}
				s.mu.Lock()
				out, due := s.track(srv, m)
				var synth []byte
				if due {
					synth = s.emitSynthLocked(nil)
				}
				s.mu.Unlock()
				checkFramed(t, "to the server", out)
				checkFramed(t, "owed answers", synth)
			case 1: // a server message
				m, err := srd.ReadMessage()
				if err != nil {
					continue
				}
				s.mu.Lock()
				_, synth := s.response(srv, m, nil)
				repl := s.repl
				s.repl = nil
				s.mu.Unlock()
				checkFramed(t, "owed answers", synth)
				if repl != nil {
					checkFramed(t, "replaced error", repl)
				}
			case 2: // the binding ends; the next one may get the other connection
				s.mu.Lock()
				s.binding++
				s.exps.reset()
				srv = conns[int(op>>2)%len(conns)]
				bound = op&0x80 == 0
				s.mu.Unlock()
			}
			if s.exps.head > len(s.exps.q) {
				t.Fatalf("op %d: expectation queue head %d past its end %d", i, s.exps.head, len(s.exps.q))
			}
		}
		s.cw.Flush()
		checkFramed(t, "answers without a server", toClient.Bytes())
	})
}
