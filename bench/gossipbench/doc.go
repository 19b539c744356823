// Package gossipbench measures hawser's gossip membership against
// hashicorp/memberlist v0.6.0 on the same scenario, for the hawser-bench
// CLI (--scenario gossip): N nodes on loopback UDP in one process, under a
// loss rate applied to every outgoing datagram, with one healthy node
// stalled; it reports how fast a killed node is detected (p50 and p99 over
// the nodes), how fast a join reaches every node, the healthy nodes ever
// declared dead, and the bytes each node sends per second: counted by
// each protocol, and on the wire (TLS included, see wire.go).
//
// Both implementations run under the same conditions: the same node count
// and probe interval (memberlist's DefaultLANConfig and hawser's identical
// defaults, both scaled the same way, see memberlistConfig), encryption on
// (AES-256-GCM), the same seeded loss model, stall method and byte
// counting, applied by wrapping each one's transport (memberlist's
// NodeAwareTransport, hawser's gossip.Transport), and the same TCP relays
// for the wire bytes.
//
// This package is a library; the CLI owns flags, tables and plots.
package gossipbench
