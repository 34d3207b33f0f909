package auth

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testServer is a minimal PostgreSQL server around Authenticate: it reads
// the startup message, authenticates with the configured method and lookup,
// then answers any simple Query with one row ("1") and extended-protocol
// queries with rows from its query function (for auth_query tests).
type testServer struct {
	t      *testing.T
	ln     net.Listener
	method Method

	mu     sync.Mutex // guards lookup, query
	lookup func(user string) (Secret, bool)
	query  func(sql, param string) (columns []string, rows [][][]byte, errCode string)

	results chan error // Authenticate's result, one per connection that got that far
	wg      sync.WaitGroup
}

func startServer(t *testing.T, method Method, users map[string]Secret) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, ln: ln, method: method, results: make(chan error, 100)}
	s.setUsers(users)
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.close)
	return s
}

func (s *testServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// setUsers replaces the users the server knows.
func (s *testServer) setUsers(users map[string]Secret) {
	s.setLookup(func(user string) (Secret, bool) {
		secret, ok := users[user]
		return secret, ok
	})
}

func (s *testServer) setLookup(lookup func(string) (Secret, bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookup = lookup
}

func (s *testServer) setQuery(q func(sql, param string) ([]string, [][][]byte, string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.query = q
}

// result returns the result of the next Authenticate call.
func (s *testServer) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.results:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no authentication result within 10s")
		return nil
	}
}

func (s *testServer) close() {
	_ = s.ln.Close()
	s.wg.Wait()
	select {
	case err := <-s.results:
		s.t.Errorf("unchecked authentication result: %v", err)
	default:
	}
}

func (s *testServer) acceptLoop() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go s.serveConn(conn)
	}
}

func (s *testServer) serveConn(conn net.Conn) {
	defer s.wg.Done()
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	be := pgproto3.NewBackend(conn, conn)

	var startup *pgproto3.StartupMessage
	for startup == nil {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch msg := msg.(type) {
		case *pgproto3.StartupMessage:
			startup = msg
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return
			}
		default:
			return
		}
	}

	user := startup.Parameters["user"]
	s.mu.Lock()
	lookup := s.lookup
	s.mu.Unlock()
	secret, found := lookup(user)
	err := Authenticate(be, s.method, user, secret, found)
	s.results <- err
	if err != nil {
		var authErr *Error
		if errors.As(err, &authErr) {
			be.Send(authErr.Response())
			_ = be.Flush()
		}
		return
	}

	be.Send(&pgproto3.AuthenticationOk{})
	for _, p := range [][2]string{
		{"server_version", "15.0"},
		{"server_encoding", "UTF8"},
		{"client_encoding", "UTF8"},
		{"DateStyle", "ISO, MDY"},
		{"integer_datetimes", "on"},
		{"standard_conforming_strings", "on"},
	} {
		be.Send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 2}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	s.serveQueries(be)
}

// serveQueries answers queries until the client leaves.
func (s *testServer) serveQueries(be *pgproto3.Backend) {
	var sql, param string
	failed := false // skip to Sync after an error, as PostgreSQL does
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		switch msg := msg.(type) {
		case *pgproto3.Query:
			be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
				{Name: []byte("?column?"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1},
			}})
			be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("1")}})
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Parse:
			sql = msg.Query
			be.Send(&pgproto3.ParseComplete{})
		case *pgproto3.Bind:
			param = ""
			if len(msg.Parameters) > 0 {
				param = string(msg.Parameters[0])
			}
			be.Send(&pgproto3.BindComplete{})
		case *pgproto3.Describe:
			// Answered with Execute, once the rows are known.
		case *pgproto3.Execute:
			if failed {
				continue
			}
			s.mu.Lock()
			query := s.query
			s.mu.Unlock()
			columns, rows, code := query(sql, param)
			if code != "" {
				be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: code, Message: "query failed"})
				failed = true
				continue
			}
			fields := make([]pgproto3.FieldDescription, len(columns))
			for i, c := range columns {
				fields[i] = pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
			}
			be.Send(&pgproto3.RowDescription{Fields: fields})
			for _, r := range rows {
				be.Send(&pgproto3.DataRow{Values: r})
			}
			be.Send(&pgproto3.CommandComplete{CommandTag: fmt.Appendf(nil, "SELECT %d", len(rows))})
		case *pgproto3.Sync:
			failed = false
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Terminate:
			return
		default:
			return
		}
		if be.Flush() != nil {
			return
		}
	}
}
