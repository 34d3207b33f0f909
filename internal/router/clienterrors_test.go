package router

import (
	"io"
	"maps"
	"testing"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// The scanner counts each ErrorResponse once, by SQLSTATE label, however
// the stream is cut into writes, and ignores notices and other messages.
func TestErrorScannerCountsAcrossWrites(t *testing.T) {
	var stream []byte
	stream = wire.AppendReadyForQuery(stream, wire.TxIdle)
	stream = wire.AppendError(stream, wire.SeverityError, "42601", "syntax error")
	stream = wire.AppendNotice(stream, "WARNING", "01000", "a notice is not an error")
	stream = wire.AppendQuery(stream, "a message with a long body that is not an error at all")
	stream = wire.AppendError(stream, wire.SeverityFatal, "57P01", "terminating")
	stream = wire.AppendError(stream, wire.SeverityError, "P0004", "assert failure: counted by class")
	stream = wire.AppendReadyForQuery(stream, wire.TxIdle)
	want := map[string]uint64{"42601": 1, "57P01": 1, "P0XXX": 1}

	for cut := 1; cut <= len(stream); cut++ {
		var counts ErrorCounts
		e := &errorScanner{w: io.Discard, counts: &counts}
		for rest := stream; len(rest) > 0; {
			n := min(cut, len(rest))
			e.Write(rest[:n])
			rest = rest[n:]
		}
		if got := counts.Snapshot(); !maps.Equal(got, want) {
			t.Fatalf("writes of %d bytes: counts %v, want %v", cut, got, want)
		}
	}
}

// A stream whose framing makes no sense stops being counted rather than
// counting garbage.
func TestErrorScannerBrokenFraming(t *testing.T) {
	var counts ErrorCounts
	e := &errorScanner{w: io.Discard, counts: &counts}
	e.Write([]byte{'E', 0, 0, 0, 1})
	e.Write(wire.AppendError(nil, wire.SeverityError, "42601", "x"))
	if got := counts.Snapshot(); len(got) != 0 {
		t.Fatalf("counts after a bad length: %v", got)
	}
}

func TestSQLStateLabel(t *testing.T) {
	for code, want := range map[string]string{
		"25006": "25006", "08P01": "08P01", "22023": "22XXX", "P0001": "P0XXX", "": "other", "4260": "other", "42 01": "other",
	} {
		if got := SQLStateLabel(code); got != want {
			t.Errorf("SQLStateLabel(%q) = %q, want %q", code, got, want)
		}
	}
}
