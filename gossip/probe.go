package gossip

import (
	"time"
)

// Failure detection (PROTOCOL.md §5.1), SWIM with Lifeguard:
//
//  1. every probe interval, ping the next member of a randomized
//     round-robin order (with the suspicion piggybacked if it is suspect);
//  2. no ack within the probe timeout: ask IndirectChecks members to ping
//     it for us (they nack if they get no answer either), and try the
//     fallback probe over RPC: at once over a connection already open,
//     else after a grace, if no ack came (fallbackLocked);
//  3. still no ack at the end of the interval: suspect the member.
//
// Both the interval and the timeout are stretched by the local health
// score plus one: a node that misses its own acks (nacks that never came,
// suspicions about itself) probes less and waits longer, instead of
// accusing healthy members.

// probeRun is the probe in progress (guarded by mu).
type probeRun struct {
	target        *member
	seq           uint32
	acked         bool
	expectedNacks int
	nacks         int
	indirect      bool // the timeout step ran: indirect pings (and the fallback) went out
	timeout, end  Timer
	fallback      Timer // the held-back fallback probe (fallbackLocked), or nil
	endAt         time.Time
}

func (p *probeRun) stop() {
	for _, t := range []Timer{p.timeout, p.end, p.fallback} {
		if t != nil {
			t.Stop()
		}
	}
}

// ackWait is what an expected ack answers: a probe of ours, or an indirect
// probe this node makes for another.
type ackWait struct {
	probe *probeRun
	relay *relay
}

// relay is an indirect probe this node makes for a requester.
type relay struct {
	reqSeq uint32 // the requester's sequence number
	to     string // the requester's address
	nack   bool
	timer  Timer
}

// probeTickLocked starts the next probe; the end of each probe schedules
// the next one.
func (g *Gossip) probeTickLocked() {
	scale := time.Duration(g.health + 1)
	m := g.nextProbeTargetLocked()
	if m == nil {
		g.timers[timerProbe] = g.afterLocked(g.cfg.ProbeInterval, g.probeTickLocked)
		return
	}
	g.stats.probes.Add(1)
	pr := &probeRun{target: m, seq: g.nextSeqLocked(), endAt: g.clock.Now().Add(g.cfg.ProbeInterval * scale)}
	g.probe = pr
	g.acks[pr.seq] = &ackWait{probe: pr}
	p := g.beginPacket()
	if m.state == StateSuspect && !g.cfg.DisableLifeguard {
		// Lifeguard: tell the suspect, so that it refutes at once.
		p = appendAccusation(p, msgSuspect, m.inc, m.id, g.id)
	}
	p = appendPing(p, pr.seq, m.id, g.id)
	g.sendLocked(m.addr, p)
	pr.timeout = g.afterLocked(g.cfg.ProbeTimeout*scale, func() { g.probeTimeoutLocked(pr) })
	pr.end = g.afterLocked(g.cfg.ProbeInterval*scale, func() { g.probeEndLocked(pr) })
	g.timers[timerProbe] = nil
}

// nextProbeTargetLocked advances the round-robin order to the next live
// member, reshuffling at the end of a round.
func (g *Gossip) nextProbeTargetLocked() *member {
	for tries := 0; tries < 2; tries++ {
		for g.orderIdx < len(g.order) {
			m := g.order[g.orderIdx]
			g.orderIdx++
			if m.live() && g.members[m.id] == m {
				return m
			}
		}
		// End of a round: a new random order of the current members.
		g.order = g.order[:0]
		for _, m := range g.list {
			if m != g.self {
				g.order = append(g.order, m)
			}
		}
		g.rng.Shuffle(len(g.order), func(i, j int) { g.order[i], g.order[j] = g.order[j], g.order[i] })
		g.orderIdx = 0
	}
	return nil
}

// probeTimeoutLocked: the direct ping got no ack in time.
func (g *Gossip) probeTimeoutLocked(pr *probeRun) {
	if g.probe != pr || pr.acked || pr.indirect {
		return
	}
	pr.indirect = true
	g.stats.indirectProbes.Add(1)
	m := g.probe.target
	nack := !g.cfg.DisableLifeguard
	helpers := g.randomMembersLocked(g.cfg.IndirectChecks, func(x *member) bool {
		return x != m && x.state == StateAlive
	})
	for _, h := range helpers {
		g.sendLocked(h.addr, appendIndirectPing(g.beginPacket(), pr.seq, nack, m.id, m.addr))
	}
	if nack {
		pr.expectedNacks = len(helpers)
	}
	if g.cfg.DisableRPCFallback {
		return
	}
	g.fallbackLocked(pr)
}

// fallbackGraceDiv sets the grace of a held-back fallback probe: this
// fraction of the rest of the interval.
const fallbackGraceDiv = 5

// fallbackLocked sends the fallback probe with the indirect pings
// (PROTOCOL.md §5.1) when that is cheap: the transport has a connection to
// the target open, or does not say (ConnectedTransport). Otherwise the
// fallback would cost a dial and a TLS handshake, kilobytes against the
// hundred bytes of a ping, for a probe that one lost datagram usually
// sent this way and that an indirect ack, two round trips away, usually
// saves. So it waits a fifth of the rest of the interval (100 ms with the
// defaults) and is sent only if no ack came by then: a member whose
// datagrams are all lost still gets it, with four fifths of the time for
// the dial.
func (g *Gossip) fallbackLocked(pr *probeRun) {
	if ct, ok := g.tr.(ConnectedTransport); !ok || ct.Connected(pr.target.addr) {
		g.fallbackProbeLocked(pr)
		return
	}
	grace := pr.endAt.Sub(g.clock.Now()) / fallbackGraceDiv
	pr.fallback = g.afterLocked(grace, func() {
		if g.probe != pr {
			return // over: its end stops this timer, unless both were due at once
		}
		if pr.acked {
			g.stats.fallbackSkipped.Add(1)
			return
		}
		g.fallbackProbeLocked(pr)
	})
}

// fallbackProbeLocked pings the target over RPC (a reliable stream), which
// gets through where datagrams are lost or filtered.
func (g *Gossip) fallbackProbeLocked(pr *probeRun) {
	m := pr.target
	plain := appendPingBody(beginRequest(nil, msgPing), pr.seq, m.id, g.id)
	req := g.keys.seal(nil, plain, g.ad)
	timeout := pr.endAt.Sub(g.clock.Now())
	g.stats.fallbackProbes.Add(1)
	g.stats.exchangesSent.Add(1)
	g.stats.exchangeBytesSent.Add(int64(len(req)))
	err := g.tr.Call(m.addr, req, timeout, func(resp []byte, err error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.closed || err != nil {
			return
		}
		plain, _, err := g.keys.open(nil, resp, g.ad)
		if err != nil {
			g.stats.decryptFailures.Add(1)
			return
		}
		t, body, err := parseRequest(plain)
		if err != nil || t != msgAck {
			g.stats.malformed.Add(1)
			return
		}
		if seq, err := parseSeqMsg(body); err == nil && seq == pr.seq {
			if g.probe == pr && !pr.acked {
				g.stats.fallbackAcks.Add(1)
			}
			g.ackLocked(seq)
		}
	})
	if err != nil {
		g.stats.sendErrors.Add(1)
	}
}

// probeEndLocked closes a probe: suspect the target if nothing answered,
// update the health score, start the next probe.
func (g *Gossip) probeEndLocked(pr *probeRun) {
	if g.probe != pr {
		return
	}
	if !pr.acked && !pr.indirect {
		// The end ran before the timeout: both were overdue (this node
		// ran late, a stall longer than interval - timeout), and the
		// clock calls them on goroutines of its own, in no set order.
		// The target got only the direct ping: send the indirect pings
		// and the fallback now, with the rest of an interval, rather
		// than suspect it for this node's lateness.
		rest := (g.cfg.ProbeInterval - g.cfg.ProbeTimeout) * time.Duration(g.health+1)
		pr.endAt = g.clock.Now().Add(rest)
		pr.end = g.afterLocked(rest, func() { g.probeEndLocked(pr) })
		g.probeTimeoutLocked(pr)
		return
	}
	g.probe = nil
	delete(g.acks, pr.seq)
	pr.stop()
	if !pr.acked {
		if !g.cfg.DisableLifeguard {
			// Lifeguard: helpers that did not even nack mean our own
			// network or CPU is the problem, not (only) the target.
			delta := 1
			if pr.expectedNacks > 0 {
				delta = pr.expectedNacks - pr.nacks
			}
			g.healthDeltaLocked(delta)
		}
		m := pr.target
		if g.members[m.id] == m && m.live() {
			// A member already suspect: this failed probe is one more
			// independent confirmation.
			g.stats.suspected.Add(1)
			g.suspectLocked(m.inc, []byte(m.id), []byte(g.id), true)
		}
	}
	g.probeTickLocked()
}

// ackLocked handles an ack: one of our probes succeeded, or an indirect
// probe we make for another node did.
func (g *Gossip) ackLocked(seq uint32) {
	w := g.acks[seq]
	if w == nil {
		return // late, duplicate or unknown
	}
	if pr := w.probe; pr != nil {
		if !pr.acked {
			pr.acked = true
			g.healthDeltaLocked(-1)
		}
		return
	}
	r := w.relay
	delete(g.acks, seq)
	g.relays--
	r.timer.Stop()
	g.sendLocked(r.to, appendSeqMsg(g.beginPacket(), msgAck, r.reqSeq))
}

func (g *Gossip) nackLocked(seq uint32) {
	if w := g.acks[seq]; w != nil && w.probe != nil && w.probe.nacks < w.probe.expectedNacks {
		w.probe.nacks++
	}
}

// relayLocked probes a target for the node at from (an indirect ping).
func (g *Gossip) relayLocked(from string, p indirectPing) {
	if string(p.target) == g.id {
		g.sendLocked(from, appendSeqMsg(g.beginPacket(), msgAck, p.seq))
		return
	}
	if g.relays >= maxRelays {
		g.stats.dropped.Add(1)
		return
	}
	seq := g.nextSeqLocked()
	r := &relay{reqSeq: p.seq, to: from, nack: p.nack}
	g.acks[seq] = &ackWait{relay: r}
	g.relays++
	g.sendLocked(string(p.addr), appendPing(g.beginPacket(), seq, string(p.target), g.id))
	expire := func() {
		if g.acks[seq] != nil && g.acks[seq].relay == r {
			delete(g.acks, seq)
			g.relays--
		}
	}
	if !r.nack {
		r.timer = g.afterLocked(g.cfg.ProbeTimeout, expire)
		return
	}
	// Nack at 80% of the probe timeout, so that it reaches the requester
	// before its probe ends; keep relaying a late ack until the timeout.
	r.timer = g.afterLocked(g.cfg.ProbeTimeout*8/10, func() {
		if g.acks[seq] == nil || g.acks[seq].relay != r {
			return
		}
		g.sendLocked(r.to, appendSeqMsg(g.beginPacket(), msgNack, r.reqSeq))
		r.timer = g.afterLocked(g.cfg.ProbeTimeout*2/10, expire)
	})
}
