// Package gossip is hawser's cluster membership: who is alive, without a
// central server. It is SWIM (randomized round-robin probing, indirect
// probes, suspicion and refutation by incarnation numbers, infection-style
// dissemination piggybacked on the probes) with the Lifeguard refinements
// (a local health score that slows a struggling node's own probing,
// suspicion timeouts that start long and shrink with independent
// confirmations, suspicions piggybacked on pings to the suspect), plus
// push-pull anti-entropy and a fallback probe over hawser RPC. It follows
// hashicorp/memberlist's rules and defaults closely; the wire format is
// its own (gossip/PROTOCOL.md).
//
// # Transport and security
//
// Datagrams go over UDP bound to the RPC server's address and port number
// (rpc-bind-addr, rpc-port): NewUDPTransport registers one RPC method on the
// server (push-pull and the fallback probe) and calls other members through
// a pool. A datagram never exceeds Config.MaxPacketSize (1400 bytes by
// default) and packs several messages. Every datagram, request and response
// is sealed with AES-256-GCM under a key derived from the cluster key
// (HKDF-SHA256), with a fresh random nonce and the cluster name as
// additional data. A Keyring holds a primary key and secondary keys, so the
// key of a running cluster rotates without a failed packet (AddKey, UseKey,
// RemoveKey, each on every node in turn). Input that does not authenticate,
// is replayed, oversize or malformed is dropped and counted (Stats), never
// logged per packet, and never allocates.
//
// # Lifecycle and events
//
// New starts a node and joins through Config.Seeds (seed-nodes) or, after a
// restart, the members saved in Config.DataDir. Leave tells the others the
// node left (they record Left, not Dead); Shutdown just stops. Metadata (a
// small blob: roles, a Raft address) is versioned by the incarnation number
// (UpdateMeta). Subscribe delivers join, update, suspect, alive, dead and
// left events in order, without ever blocking the protocol: a subscriber
// that falls a buffer behind is dropped (ErrSubscriberLagged) and
// resubscribes. PoolHook keeps a pool in step: a member seen alive is
// MarkAlive'd (a parked peer is dialed at once), a dead or departed one is
// parked. Broadcast disseminates small application messages.
//
// # Simulation
//
// The protocol core has no goroutine of its own: it runs on its
// transport's deliveries and its clock's timers. MemNetwork (seeded loss,
// delay, partitions, "stall this node for D") and VirtualClock run a whole
// cluster deterministically on one goroutine: a 64-node cluster's minute in
// a fraction of a second.
//
// This package does not carry application traffic (use pool and server),
// does not elect leaders (use raft), and does not distribute keys: keyring
// operations are local to a node.
package gossip
