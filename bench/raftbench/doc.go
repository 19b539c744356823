// Package raftbench measures hashicorp/raft v1.8.0 over different
// transports, for the hawser-bench CLI (--scenario raft): three voters in
// this process, each with raft's in-memory log and stable store, a discard
// snapshot store and a trivial FSM, under the same raft configuration for
// every transport (raft.DefaultConfig with LocalID set and a null logger:
// raft's default timeouts, batching and pipelining). Only the transport
// differs:
//
//   - hawser: hawser's raft transport (package raft of this repository),
//     over TLS 1.3 with the cluster-key proof;
//   - net-tls: raft's NetworkTransport over a TLS 1.3 StreamLayer as Consul
//     and Vault run it: a tls.Listener and a tls.Dialer with a timeout,
//     certificates verified both ways;
//   - net-tcp: raft's NetworkTransport over plain TCP (raft.NewTCPTransport);
//   - inmem: raft's InmemTransport, no encoding and no sockets: the ceiling.
//
// A run (Run) builds a fresh cluster, waits for a leader, runs Conc
// goroutines that call Apply on the leader and wait for each future, and
// measures over a window after a warm-up: applies per second, the commit
// latency (Apply to the future's return), CPU time and heap allocations per
// apply (the whole process: all three nodes are in it), and the round-trip
// time of the heartbeats the leader sends meanwhile (measured by wrapping
// every node's transport, see measure.go). It then tears the cluster down
// and checks that its goroutines are gone. Snapshot measures one
// InstallSnapshot of a given size between two fresh transports, no raft.
//
// This package is a library; the CLI owns flags, rounds, tables and JSON.
package raftbench
