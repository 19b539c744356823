// Package raft is a github.com/hashicorp/raft Transport over hawser, so a
// cluster runs Raft on the one TLS port that carries its RPC, with the
// cluster-key authentication, backoff, parking and gossip wake-up of the
// pool. A Transport registers its methods on a server.Server (before it
// serves) and dials peers through a pool.Pool; it implements
// raft.Transport, raft.WithClose and raft.WithPreVote. Addresses are
// hawser addresses (host:rpc-port).
//
// What it adds to raft's NetworkTransport:
//
//   - Messages are encoded by hand (wire.go, PROTOCOL.md "Messages"): no
//     msgpack, no reflection; a follower's entries cost two allocations
//     per AppendEntries, and their Data and Extensions point into the
//     request's buffer, which is never recycled.
//   - Heartbeats (raft's predicate) go as urgent calls with their own short
//     timeout (Config.HeartbeatTimeout) on the pool's shared connections,
//     while appends and snapshots take a dedicated connection per peer
//     (pool.Peer.Dedicated): a heartbeat never waits behind their bytes,
//     neither in hawser's queues nor in the socket buffers, which no
//     priority can reach. Heartbeats run on the server's worker pool, never
//     behind the ordered appends and never on the event loop. Votes,
//     pre-votes and TimeoutNow are urgent too.
//   - AppendEntriesPipeline pins the dedicated connection; the follower serves one
//     leader's appends one at a time in arrival order (conn.ModeOrdered);
//     the window is bounded by count and bytes; every call has a deadline,
//     and Close cancels the calls in flight, so raft's pipeline cannot hang
//     on a follower that stops answering (hashicorp/raft#612). Replies are
//     handed to Consumer by the goroutine that completes them
//     (conn.Conn.GoFunc), without a waiter goroutine.
//   - InstallSnapshot streams on the dedicated connection as chunk calls,
//     at most SnapshotWindow bytes unanswered; the follower's Reader yields
//     exactly Size bytes then io.EOF, or ErrSnapshotTruncated /
//     ErrSnapshotStalled, and holds about one window whatever the size.
//   - After Close no RPC reaches raft (hashicorp/raft#717): handlers
//     answer CodeShutdown.
//
// The wire format and the flows are in raft/PROTOCOL.md.
//
// This package does not run raft, choose peers, or store logs: raft does,
// with the stores the application gives it. It does not close the Server
// or the Pool it was given.
package raft
