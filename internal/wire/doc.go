// Package wire frames the PostgreSQL frontend/backend protocol (version 3.0)
// for a proxy that forwards most messages without decoding them.
//
// # Layers
//
// A connection starts with one untyped packet (ReadStartup): a
// StartupMessage, or an SSLRequest/GSSENCRequest that the proxy answers
// before the real startup, or a CancelRequest on a connection of its own.
// After startup every message is typed: one type byte, a 4-byte big-endian
// length that counts itself, then the body (PostgreSQL docs, 55.2 "Message
// Flow" and 55.7 "Message Formats").
//
// Reader returns each typed message as a Message: the raw bytes, header
// included, aliasing a reused buffer. The proxy writes those bytes on
// unchanged; it decodes only the few messages it must look at
// (ReadyForQuery, ParameterStatus, ErrorResponse, and the ones that carry
// statement names) with the small zero-allocation helpers here. Messages the
// proxy generates itself are built with the Append* functions, in the
// append-to-dst style of pgproto3.
//
// Every length read from a peer is checked against a limit before anything
// is allocated, so a peer cannot make the proxy allocate unbounded memory; a
// header that cannot be valid is a *FrameError and ends the stream.
//
// This package imports no other pauseproxy package and keeps no state beyond
// one Reader's buffer.
package wire
