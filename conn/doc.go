// Package conn is one hawser connection: TLS and an authenticated handshake
// off the event loop, then multiplexed calls and streams on a gnet v2 loop.
//
// Life of a connection. Dial (or, on the accepting side, Accept) runs TCP,
// TLS (1.3 by default, 1.2 minimum; plaintext only with the option named
// InsecurePlaintext) and the hawser handshake on the blocking socket,
// bounded by Config.Timeout (rpc-timeout): prefaces with version ranges,
// then HELLO/HELLO_ACK in which each side proves it holds the cluster key
// with an HMAC over TLS exporter keying material, compared in constant
// time. Only then is the socket enrolled on an Engine's event loop; no frame
// other than the handshake is read before. PROTOCOL.md §5.
//
// Dialed connections may instead run without an event loop
// (Config.DialRead; by default when GOMAXPROCS is 1): a goroutine parked
// in Go's network poller reads, and the connection's loop code runs under
// a lock held by that reader or by a task goroutine started on demand, so
// a reply wakes its caller on the reader's thread. Everything below about
// "the loop" holds for that lock.
//
// On the loop. Reads decrypt TLS records on the loop through an adapter
// whose Read reports "would block" in the form crypto/tls tolerates, and
// frames are parsed in place. Writes from any goroutine append frames to a
// queue in pooled chunks; the loop encrypts and writes what is queued with
// one vectored write per flush (DESIGN.md §4). A lone call is the
// exception: when the frame's call is the only one in flight and nothing
// else is queued, being written or buffered in gnet, the goroutine that
// queued it (the caller, or the handler's worker for its reply) encrypts
// and writes the socket itself with a non-blocking writev, leaving to the
// loop only what the socket does not take; one writer at a time, so the
// order of records holds (Config.LoopWrites turns this off). Urgent frames (control
// frames, calls marked urgent and their replies) go ahead of bulk ones;
// large messages travel as bounded fragments; a high-water mark on queued
// bytes makes callers wait instead of growing the queue, while a handler's
// reply that finds no room is parked in the connection's outbox and its
// goroutine freed. A peer that does not read is bounded too (PROTOCOL.md
// §9): the loop stops reading a peer whose input makes it produce output
// faster than the peer takes it, and closes it with GOAWAY SlowReader past
// MaxInputBacklog of unprocessed input or WriteStallTimeout without a byte
// written.
//
// Calls. Call, Go and OpenStream multiplex by request ID and complete out
// of order. A context's deadline travels with the call and becomes the
// handler's; cancelling the context sends CANCEL, which cancels the
// handler's context; the connection stays up. Streams are flow-controlled
// per stream by credit, so a consumer that stops reading stalls only its
// own stream. When the connection breaks every pending call and stream
// fails at once with a *hawser.TransportError; a handler's error arrives as
// a *hawser.RemoteError. PING/PONG keepalive, an inactivity timeout and
// GOAWAY (graceful drain) complete the lifecycle. A graceful close writes
// everything first: the drain ends when the outcomes are in the socket, then
// the write side is shut down and the peer's close awaited (bounded by
// Timeout), so the kernel never resets away the tail.
//
// Serving. An accepted connection resolves methods through a Router and
// runs each handler on the Router's bounded pool (ModePool), on the loop
// for handlers that never block (ModeInline), or in arrival order on a
// goroutine of the connection (ModeOrdered). Stream handlers and the
// ordered goroutine run through Router.Go, so the Router's owner can wait
// for them. A call holds its MaxCalls slot until the last frame of its
// outcome is queued, which is before the dialer can see it.
//
// Idle connections. A connection holds no read buffer between socket
// events unless a frame is partial. Once it has been quiet for a tick of
// its timer (no call in flight, started or ended), the loop also drops
// what its busiest moment left allocated: crypto/tls's receive buffers
// (a full record or more, which crypto/tls never shrinks; see idle.go) and
// the capacity of its maps and queues. Keepalive traffic keeps it lean.
//
// Lifetimes of bytes. A Request's Payload and Metadata are valid until the
// handler returns, unless it calls Request.Keep. A reply returned by Call
// and an item returned by Stream.Recv belong to the caller. Bytes passed
// to Call or ServerStream.Send are copied before the function returns.
//
// Direct writes and a poller's reads are raw system calls: unlike net's
// own I/O they give the race detector no happens-before edge through the
// socket, so a test that relies on one (a handler's write seen by the
// caller after the reply, in one process) must synchronize itself.
//
// Lock order: Conn.mu, then the write queue's mutex, then a stream's mutex.
// The writer encrypts with no hawser lock held; crypto/tls's output lock
// comes before the transport's output mutex, which is innermost.
// A served call's outcome is queued under the write queue's mutex alone
// (its slots are atomics) and leaves Conn.inflight under Conn.mu after, so
// the two are never held together on that path. No lock is held across a
// gnet call that can close the connection.
//
// This package knows one connection. Reconnection, backoff and many peers
// are the pool package's; the listener and method registry are the server
// package's.
package conn
