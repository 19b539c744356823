// Package pool is the client side of hawser toward many peers. A Pool holds
// a Peer per address; a Peer holds one or more multiplexed connections,
// dialing another when every connection has the acceptor's in-flight limit
// of calls. Each dial is bounded by rpc-timeout. A failed dial is retried
// in the background with truncated exponential backoff and jitter, capped
// at rpc-backoff-max; after rpc-retries-max failed attempts in a row the
// peer is parked: no more dials, calls fail at once with
// ErrPeerUnavailable, until MarkAlive (the hook gossip calls) wakes it and
// it is dialed at once.
// Connections idle past rpc-inactivity-timeout close and are dialed again on
// demand. A connection that breaks after it has been open
// Config.StableAfter is re-dialed at once; one that breaks sooner counts
// as a failed attempt, like a failed dial (backoff, then parking), so a
// peer that accepts and drops every connection is not dialed in a loop.
// After Close every call fails at once with ErrPoolClosed.
//
// A *Peer is a hawser.Caller: typed methods call through it. Calls refused
// by a draining connection (GOAWAY: not processed) are retried on another.
//
// This package does not discover peers; gossip does, and tells the pool
// through MarkAlive and MarkDead.
package pool
