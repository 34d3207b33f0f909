package auth

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// QuerySecret looks up user's secret with auth_query, as PgBouncer does: it
// connects with connCfg (the auth_user's login), runs query with user as $1
// over the extended protocol, and closes the connection. PgBouncer's default
// query is
//
//	SELECT usename, passwd FROM pg_shadow WHERE usename=$1
//
// The query must return two columns, the user name and the secret, and at
// most one row. No row means the user is unknown (found is false); a NULL
// secret means the user exists but has no password, which Authenticate
// fails after a full exchange. err is a failure to connect or query; it
// says nothing about the user, and the caller should answer the client as
// for a server that cannot be reached, not as for a wrong password.
func QuerySecret(ctx context.Context, connCfg *pgconn.Config, query, user string) (secret Secret, found bool, err error) {
	conn, err := pgconn.ConnectConfig(ctx, connCfg)
	if err != nil {
		return Secret{}, false, fmt.Errorf("auth_query: connect as %q: %w", connCfg.User, err)
	}
	defer conn.Close(ctx)
	return QuerySecretConn(ctx, conn, query, user)
}

// QuerySecretConn is QuerySecret over a connection the caller keeps (a
// pooler keeps one per auth_user rather than dialing for every login). It
// leaves conn idle, or returns the error that broke it.
func QuerySecretConn(ctx context.Context, conn *pgconn.PgConn, query, user string) (secret Secret, found bool, err error) {
	rr := conn.ExecParams(ctx, query, [][]byte{[]byte(user)}, nil, nil, nil)
	rows := 0
	var password []byte
	for rr.NextRow() {
		rows++
		if values := rr.Values(); rows == 1 && len(values) == 2 && values[1] != nil {
			password = append([]byte{}, values[1]...) // Values are valid only until NextRow
		}
	}
	columns := len(rr.FieldDescriptions())
	if _, err := rr.Close(); err != nil {
		return Secret{}, false, fmt.Errorf("auth_query for user %q: %w", user, err)
	}
	switch {
	case columns != 2:
		return Secret{}, false, fmt.Errorf("auth_query for user %q: want 2 columns (user name, password), got %d", user, columns)
	case rows == 0:
		return Secret{}, false, nil
	case rows > 1:
		return Secret{}, false, fmt.Errorf("auth_query for user %q: want at most 1 row, got %d", user, rows)
	case password == nil:
		return Secret{}, true, nil // NULL: the user has no password
	}
	return ParseSecret(string(password)), true, nil
}
