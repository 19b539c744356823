// Package codec is hawser's wire format: the fixed 16-byte frame header, the
// frame kinds, flags and error codes, the bodies of CALL, ERROR and the
// handshake (preface and HELLO), call metadata, and payload compression.
//
// Everything here is a pure function over []byte: no goroutines, no I/O, no
// networking imports. Encoders append to a caller-owned slice ("abuse
// append"); decoders take the bytes as hostile, check every length against the
// input and the configured limits before slicing, never panic and never
// allocate an amount chosen by the peer. Parsing a header allocates nothing
// (asserted in header_test.go).
//
// PROTOCOL.md at the repository root is the specification; the golden frames
// in testdata/golden.txt are checked by golden_test.go and cited there.
//
// This package is not for framing a net.Conn or for anything that blocks: the
// conn package owns buffering and the event loop.
package codec
