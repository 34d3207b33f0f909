package failover_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pauseproxy/pauseproxy/internal/discovery"
)

// stoppingServer is a fake primary that PostgreSQL's shutdown caught in the
// middle of a statement: it answers logins, the proxy's own queries and
// pg_is_in_recovery() like a writable primary, but the first query of
// victim gets a RowDescription and a DataRow that PostgreSQL had buffered,
// then FATAL 57P01, in one write, and the connection closes. From then on
// it refuses logins with 57P03, as a server shutting down does. A real
// server produces this only by chance (the SIGTERM must land between the
// row and the CommandComplete), hence the fake.
type stoppingServer struct {
	ln       net.Listener
	victim   string
	complete bool // the victim's CommandComplete goes out before the FATAL
	stopping atomic.Bool
	wg       sync.WaitGroup
}

func startStoppingServer(t *testing.T, victim string, complete bool) *stoppingServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stoppingServer{ln: ln, victim: victim, complete: complete}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *stoppingServer) member() *discovery.Member {
	return &discovery.Member{Name: "f", Host: "127.0.0.1", Port: s.ln.Addr().(*net.TCPAddr).Port, Role: "primary", LagBytes: -1}
}

func (s *stoppingServer) accept() {
	defer s.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer c.Close()
			s.serve(c)
		}()
	}
}

func (s *stoppingServer) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	be := pgproto3.NewBackend(c, c)
	for {
		m, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		if _, ok := m.(*pgproto3.SSLRequest); ok {
			c.Write([]byte{'N'})
			continue
		}
		if _, ok := m.(*pgproto3.StartupMessage); !ok {
			return
		}
		break
	}
	if s.stopping.Load() {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P03", Message: "the database system is shutting down"})
		be.Flush()
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	for _, p := range [][2]string{{"server_version", "15.0"}, {"client_encoding", "UTF8"}, {"DateStyle", "ISO, MDY"}, {"TimeZone", "UTC"}, {"integer_datetimes", "on"}, {"standard_conforming_strings", "on"}} {
		be.Send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: 4242, SecretKey: []byte{1, 2, 3, 4}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	for {
		m, err := be.Receive()
		if err != nil {
			return
		}
		switch m := m.(type) {
		case *pgproto3.Query:
			switch {
			case strings.Contains(m.String, s.victim):
				s.stopping.Store(true)
				be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("answer"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}})
				be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("99")}})
				if s.complete {
					be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
				}
				be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"})
				be.Flush()
				return
			case strings.Contains(m.String, "pg_is_in_recovery"):
				be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("pg_is_in_recovery"), DataTypeOID: 16, DataTypeSize: 1, TypeModifier: -1}}})
				be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("f")}})
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			case strings.TrimSpace(m.String) == "" || strings.HasPrefix(m.String, "--"):
				be.Send(&pgproto3.EmptyQueryResponse{})
			default:
				// The proxy's own statements (parameter sync): done.
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			}
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Sync:
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Terminate:
			return
		default:
			be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "0A000", Message: "not supported by the fake"})
		}
		if be.Flush() != nil {
			return
		}
	}
}

// A statement cut by the primary's shutdown after PostgreSQL had already
// flushed its RowDescription and a row, but before its CommandComplete,
// committed nothing and showed the client nothing (the proxy had not
// written those bytes on): the safe retry drops the partial answer and runs
// the statement on the next primary. The client sees one whole answer. Once
// the CommandComplete has come, the implicit transaction may have committed:
// never run again; the client gets what came and the 08006 error.
func TestRetryDropsUnseenPartialAnswer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		complete bool
	}{{"cut before CommandComplete", false}, {"cut after CommandComplete", true}} {
		t.Run(tc.name, func(t *testing.T) {
			env := startEngine(t, "10s", nil)
			fake := startStoppingServer(t, "41 + 1", tc.complete)
			env.src.publish(fake.member(), nil)
			env.requireReleasedOn(t, fake.member())
			c := env.connect(t)

			type result struct {
				rows [][][]byte
				err  error
			}
			done := make(chan result, 1)
			go func() {
				res, err := c.Exec(context.Background(), "SELECT 41 + 1 AS answer").ReadAll()
				var rows [][][]byte
				for _, r := range res {
					rows = append(rows, r.Rows...)
					if r.Err != nil && err == nil {
						err = r.Err
					}
				}
				done <- result{rows, err}
			}()
			// The fake now refuses logins: the engine holds until the
			// source names the real server.
			deadline := time.Now().Add(5 * time.Second)
			for !fake.stopping.Load() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if !fake.stopping.Load() {
				t.Fatal("the query never reached the fake primary")
			}
			env.src.publish(memberB(), nil)
			var r result
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the query never completed")
			}
			if tc.complete {
				if r.err == nil || !strings.Contains(r.err.Error(), "08006") || env.db.Stats().Retries.Load() != 0 {
					t.Fatalf("a completed statement cut by the shutdown: rows %q, err %v, retries %d; want 08006 and no retry",
						r.rows, r.err, env.db.Stats().Retries.Load())
				}
				return
			}
			if r.err != nil {
				t.Fatalf("the client saw an error: %v", r.err)
			}
			if len(r.rows) != 1 || len(r.rows[0]) != 1 || string(r.rows[0][0]) != "42" {
				t.Fatalf("the client got rows %q, want one row 42 (and never the cut answer 99)", r.rows)
			}
		})
	}
}
