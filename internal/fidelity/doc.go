// Package fidelity is the protocol fidelity suite: scripted exchanges of
// PostgreSQL frontend/backend messages run directly against PostgreSQL and
// through pauseproxy in each pooling mode, whose received messages must be
// the same. The package has no code of its own; everything is in its tests
// and in testdata/*.txt, one case per file.
//
// # What a run does
//
// TestFidelity parses every testdata/*.txt script and, for each one:
//
//  1. runs it against the package's throwaway PostgreSQL cluster (pgtest),
//     recording a transcript: each message sent ("-> " and the script
//     line) and each message received ("<- " and a normalised rendering);
//  2. starts an in-process proxy in transaction mode and one in session
//     mode (or only the modes the script's Modes line names), runs the
//     script through each and records its transcript the same way;
//  3. fails the subtest (TestFidelity/<case>/<mode>) with a line diff
//     (-direct +proxy) and the script's leading comment when the
//     transcripts differ.
//
// Connections log in with pgconn and are then taken over (Hijack), so a
// script starts after ReadyForQuery of the login. TestStartupParameters
// checks the login itself: the proxy must report every ParameterStatus the
// server reports, with the same value.
//
// In transaction mode a lone client would get the same server connection
// back for every transaction (the pool hands out the most recently used
// one), which would hide exactly the bugs transaction pooling causes. So
// before the first message of each transaction the harness uses one extra
// client to take away the server connection the script just released (or
// to give back an older one), and every transaction of a script runs on a
// different server connection than the one before. Scripts must therefore
// only rely on what transaction pooling promises to keep across
// transactions: protocol-level prepared statements and reported parameters
// (SET application_name, DateStyle, TimeZone, ...), not temp tables, SQL
// PREPARE, session advisory locks or LISTEN. The harness knows when the
// proxy should have released the script's server connection by keeping
// the proxy's own accounting (Query/Sync sent, ReadyForQuery received,
// Syncs ignored in COPY IN); when the proxy still holds it, the transcript
// gets a "!! harness: ..." line, which fails the case, and the run goes on
// without rotating.
//
// # Normalisation
//
// The transcripts are compared line by line, as received. Only what differs
// for reasons other than the proxy is left out: the PID of a
// NotificationResponse (the notifying backend is another process on each
// run) and the values of BackendKeyData. Error and notice fields are all
// compared, File, Line and Routine included: both runs talk to the same
// server, so a difference means the error came from elsewhere.
//
// # Script format
//
// One step per line; blank lines and lines starting with # are ignored, and
// the comment block at the top of the file describes the case (it is shown
// when the case fails: say what is being checked and, for a case expected
// to fail, why). Arguments are key=value or positional; strings are Go
// quoted strings ("a\tb\n"), bytes may also be x"0001ff", lists are
// [v, v, ...] and may hold null.
//
//	Modes session                 pooling modes to compare (default: transaction session);
//	                              must come before the first step
//	Conn name                     switch to connection name, opening it on first use;
//	                              steps before any Conn use a connection named "main"
//
//	Query "SELECT 1; SELECT 2"    simple query
//	Parse name="s1" query="SELECT $1::int" types=[23]
//	                              name defaults to "" (unnamed), types to none
//	Bind portal="" stmt="s1" params=["5", null, x"00000005"] param_formats=[0] result_formats=[1]
//	                              every key optional; formats 0 text, 1 binary
//	Describe stmt="s1"            or Describe portal="p"
//	Execute portal="" max=2       both optional; max 0 means all rows
//	Close stmt="s1"               or Close portal="p"
//	Sync
//	Flush
//	CopyData "1\tfoo\n"           or CopyData x"..."
//	CopyDone
//	CopyFail "reason"
//
//	Expect RFQ                    read until the next ReadyForQuery
//	Expect RFQ 3                  read until three ReadyForQuery have arrived
//	Expect CopyInResponse         read until a message of that type (pgproto3's
//	                              name: RowDescription, ErrorResponse,
//	                              NotificationResponse, ...)
//
// Messages are buffered and written when the script next reads (Expect) or
// switches connection, so consecutive sends form one pipeline. Every
// message received is recorded, not only the awaited one. After the last
// step each connection gets a Sync and its ReadyForQuery, so that anything
// the script did not wait for still shows in the transcript; a script must
// therefore end outside COPY IN. An Expect that waits more than 10 seconds
// fails the run with the transcript so far.
//
// # Adding a case
//
// Write testdata/<name>.txt, then run
//
//	go test -race -count=1 -run 'TestFidelity/<name>' -v ./internal/fidelity/
//
// -v shows the direct transcript, which is worth reading once to check
// that PostgreSQL does what the case means to test. Keep the data the same
// on every run: read the fixture table fid_items (ids 1 to 5), write
// fid_sink only in a transaction that is rolled back or fails, or write
// fid_void, which drops every row (fixtures in main_test.go). Avoid tables
// the script creates (RowDescription carries table OIDs) and do not select
// backend PIDs, times or random values.
package fidelity
