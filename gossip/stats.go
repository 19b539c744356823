package gossip

import "sync/atomic"

// Stats are a node's counters since New. Hostile or broken input is only
// counted, never logged per packet.
type Stats struct {
	// Datagrams and their bytes (envelopes: what the transport carried).
	PacketsSent, PacketsReceived int64
	BytesSent, BytesReceived     int64
	// Exchanges (push-pull, fallback probes) this node started and
	// answered; ExchangeBytesSent counts the requests it sent and the
	// responses it answered with (sealed payloads, without the RPC
	// framing).
	ExchangesSent, ExchangesReceived int64
	ExchangeBytesSent                int64
	// Dropped input: envelopes that decrypt with no key (wrong key, wrong
	// cluster name, garbage, truncation), replays, datagrams over the
	// packet size, malformed or misdirected messages, message types this
	// version does not know (skipped), and work refused at a bound.
	DecryptFailures, Replayed, Oversize, Malformed, Misdirected, Unknown, Dropped int64
	// SendErrors counts datagrams or exchanges the transport refused.
	SendErrors int64
	// Conflicts counts alive claims for a live member from another address.
	Conflicts int64
	// Probes counts this node's probes; IndirectProbes those whose direct
	// ping timed out (indirect pings followed); FallbackProbes those that
	// also went over RPC (with the indirect pings); FallbackAcks those the
	// fallback answered before any datagram did: a member that answers
	// over RPC but not over UDP (a firewall dropping datagrams, a wrong
	// advertised address) shows up here. FallbackSkipped counts the
	// fallback probes held back because they would have dialed, and not
	// sent because an ack came meanwhile (PROTOCOL.md §5.1).
	Probes, IndirectProbes, FallbackProbes, FallbackAcks, FallbackSkipped int64
	// Discoveries counts the push-pulls started because an unknown
	// member probed this node; Corrections the stale accusations (of this
	// node, or of a member that left) answered directly to their sender.
	Discoveries, Corrections int64
	// Suspected counts members this node's probes suspected; DeclaredDead
	// the suspicions that timed out here; Refutations the claims about
	// this node it refuted.
	Suspected, DeclaredDead, Refutations int64
	// Events counts the events emitted, by kind.
	Events map[EventKind]int64
	// Health is the Lifeguard local health score (see Gossip.Health).
	Health int
}

type counters struct {
	packetsSent, packetsRecv, bytesSent, bytesRecv       atomic.Int64
	exchangesSent, exchangesRecv, exchangeBytesSent      atomic.Int64
	decryptFailures, replayed, oversize, malformed       atomic.Int64
	misdirected, unknown, dropped, sendErrors, conflicts atomic.Int64
	suspected, declaredDead, refutations                 atomic.Int64
	probes, indirectProbes, fallbackProbes, fallbackAcks atomic.Int64
	fallbackSkipped                                      atomic.Int64
	discoveries, corrections                             atomic.Int64
	events                                               [EventUser + 1]atomic.Int64
}

// Stats returns a snapshot of the counters.
func (g *Gossip) Stats() Stats {
	c := &g.stats
	s := Stats{
		PacketsSent: c.packetsSent.Load(), PacketsReceived: c.packetsRecv.Load(),
		BytesSent: c.bytesSent.Load(), BytesReceived: c.bytesRecv.Load(),
		ExchangesSent: c.exchangesSent.Load(), ExchangesReceived: c.exchangesRecv.Load(),
		ExchangeBytesSent: c.exchangeBytesSent.Load(),
		DecryptFailures:   c.decryptFailures.Load(), Replayed: c.replayed.Load(), Oversize: c.oversize.Load(),
		Malformed: c.malformed.Load(), Misdirected: c.misdirected.Load(), Unknown: c.unknown.Load(),
		Dropped: c.dropped.Load(), SendErrors: c.sendErrors.Load(), Conflicts: c.conflicts.Load(),
		Probes: c.probes.Load(), IndirectProbes: c.indirectProbes.Load(), FallbackProbes: c.fallbackProbes.Load(), FallbackAcks: c.fallbackAcks.Load(), FallbackSkipped: c.fallbackSkipped.Load(), Discoveries: c.discoveries.Load(), Corrections: c.corrections.Load(),
		Suspected: c.suspected.Load(), DeclaredDead: c.declaredDead.Load(), Refutations: c.refutations.Load(),
		Events: map[EventKind]int64{},
	}
	for k := EventJoin; k <= EventUser; k++ {
		if n := c.events[k].Load(); n > 0 {
			s.Events[k] = n
		}
	}
	s.Health = g.Health()
	return s
}
