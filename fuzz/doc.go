// Package fuzz holds hawser's cross-package fuzz targets: hostile peers
// that talk to a real acceptor or dialer (conn and server, on gnet event
// loops) over loopback TLS, so that fuzzed bytes go through the same TLS
// records, buffering, handshake, reassembly, handlers and write queue as in
// production. Unit-level fuzzing of the wire format (FuzzParse,
// FuzzHandshake, FuzzDecompress) lives in package codec.
//
// The package has no exported API and no non-test code: it is the targets,
// their harnesses and their corpora (testdata/fuzz/<Target>/).
//
// Targets:
//
//   - FuzzServerConn: after a valid handshake (conn.DialRaw), a fresh
//     hostile connection sends frames built from a fuzzed program (calls of
//     every handler mode, fragments, CONTINUATIONs, CANCEL, CREDIT,
//     compressed payloads and s2 bombs, metadata, PING, GOAWAY, wrong-way
//     frames, then byte mutations and truncation) followed by raw bytes. The
//     acceptor must not panic, must close (by itself with a codec.ErrProtocol
//     reported to OnError and a matching GOAWAY code, or after close_notify),
//     must send only frames within the dialer's limits and stream windows,
//     for IDs the dialer called, must allocate no more than a bound derived
//     from its configured limits, and must keep serving a well-behaved
//     client on another connection.
//   - FuzzSplitFeed: a valid sequence of frames built from a fuzzed program
//     gets the replies a model predicts (by ID, payload reassembled and
//     decompressed) both when written whole and when cut into several writes,
//     thus TLS records, at fuzzed offsets.
//   - FuzzHandshakeAcceptor: after a real TLS handshake, fuzzed bytes in
//     place of the preface, or after a valid preface as or after HELLO, reach
//     a server.Server: it closes within its Timeout, sends at most one GOAWAY
//     with a handshake code, reports a typed error to OnError and never runs
//     a handler.
//   - FuzzHandshakeDialer: conn.Dial meets a fake TLS acceptor that answers
//     with fuzzed prefaces, HELLO_ACKs and GOAWAYs: the dial fails with a
//     typed error within its Timeout and the dialer sends nothing but its
//     preface and HELLO.
//
// TestCompressedClaimOverMaxFrame covers the compression path end to end: an
// s2 block claiming more than the max frame size is refused with GOAWAY
// MessageTooLarge without allocating the claim. Every target runs its
// corpus as ordinary tests under go test; TestSeedCorpus keeps the
// committed seeds (seed-*) in step with the code that builds them, and
// TestMain checks that no goroutine is left behind.
//
// This package is not a benchmark and not a conformance suite for other
// implementations: the harnesses use hawser's own dialer and codec.
package fuzz
