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
//     timeout (Config.HeartbeatTimeout): they overtake bulk data in the
//     sender's queue, their replies overtake it in the follower's, and
//     they run on the server's worker pool, never behind the connection's
//     ordered AppendEntries and never on the event loop. Votes, pre-votes
//     and TimeoutNow are urgent too.
//   - AppendEntriesPipeline pins one connection; the follower serves one
//     leader's appends one at a time in arrival order (conn.ModeOrdered);
//     the window is bounded by count and bytes; every call has a deadline,
//     and Close cancels the calls in flight, so raft's pipeline cannot hang
//     on a follower that stops answering (hashicorp/raft#612).
//   - InstallSnapshot streams on the existing connection as chunk calls,
//     at most SnapshotWindow bytes unanswered; the follower's Reader yields
//     exactly Size bytes then io.EOF, or ErrSnapshotTruncated /
//     ErrSnapshotStalled, and holds about one window whatever the size.
//   - After Close no RPC reaches raft (hashicorp/raft#717): handlers
//     answer CodeShutdown.
//
// This package does not run raft, choose peers, or store logs: raft does,
// with the stores the application gives it. It does not close the Server
// or the Pool it was given.
package raft
