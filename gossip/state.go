package gossip

import (
	"bytes"
	"time"
)

// The membership rules (PROTOCOL.md §5), after SWIM and memberlist: a
// claim about a member carries the member's incarnation; a member alone
// raises its incarnation, to refute a suspicion or announce new metadata.
//
//   - alive(i) overrides any state at an incarnation below i;
//   - suspect(i) overrides alive at an incarnation up to i;
//   - dead(i) and leave(i) override alive and suspect up to i;
//   - a claim about this node that it is suspect or dead (or a newer alive
//     about it) is refuted: the node raises its incarnation above the
//     claim's and broadcasts alive.
//
// Each change is queued for dissemination and reported as an event.

// broadcastAliveLocked queues alive for m.
func (g *Gossip) broadcastAliveLocked(m *member) {
	g.queue.push(m.id, appendAlive(nil, m.inc, m.proto, m.id, m.addr, m.meta), m == g.self)
}

// refuteLocked answers a claim about this node at incarnation inc.
func (g *Gossip) refuteLocked(inc uint32, accused bool) {
	g.self.inc = max(g.self.inc, inc) + 1
	g.stats.refutations.Add(1)
	if accused && !g.cfg.DisableLifeguard {
		// Lifeguard: being suspected is a hint that this node is the slow
		// one.
		g.healthDeltaLocked(1)
	}
	g.broadcastAliveLocked(g.self)
}

// aliveLocked applies an alive claim.
func (g *Gossip) aliveLocked(a alive) {
	if string(a.id) == g.id {
		s := g.self
		if a.inc < s.inc || g.leaving {
			return
		}
		if a.inc == s.inc && string(a.addr) == s.addr && bytes.Equal(a.meta, s.meta) {
			return // our own claim coming back
		}
		g.refuteLocked(a.inc, false)
		return
	}
	m := g.members[string(a.id)]
	if m == nil {
		if len(g.list) >= maxMembers {
			g.stats.dropped.Add(1)
			return
		}
		m = &member{id: string(a.id), addr: string(a.addr), meta: bytes.Clone(a.meta), inc: a.inc,
			proto: a.proto, state: StateAlive, since: g.clock.Now()}
		g.addMemberLocked(m)
		g.live++
		g.broadcastAliveLocked(m)
		g.emitLocked(EventJoin, m, nil)
		return
	}
	if a.inc <= m.inc {
		return
	}
	addrChanged := string(a.addr) != m.addr
	if addrChanged && m.live() {
		// Another node claims this ID from a different address while the
		// member is live: refuse it (memberlist's conflict rule).
		g.stats.conflicts.Add(1)
		return
	}
	metaChanged := !bytes.Equal(a.meta, m.meta)
	prev := m.state
	m.inc, m.proto = a.inc, a.proto
	if metaChanged {
		m.meta = bytes.Clone(a.meta)
	}
	if addrChanged {
		m.addr = string(a.addr)
	}
	g.broadcastAliveLocked(m)
	switch prev {
	case StateAlive:
		if metaChanged || addrChanged {
			g.emitLocked(EventUpdate, m, nil)
		}
	case StateSuspect:
		m.susp.stop()
		m.susp = nil
		m.state, m.since = StateAlive, g.clock.Now()
		g.emitLocked(EventAlive, m, nil)
	case StateDead, StateLeft:
		m.state, m.since = StateAlive, g.clock.Now()
		g.live++
		g.emitLocked(EventJoin, m, nil)
	}
}

// suspectLocked applies a suspect claim by node from. confirm: the claim
// is from's own finding (a suspect message), so it counts as an independent
// confirmation of a suspicion in progress; a suspect entry of a push-pull
// state does not (it may be hearsay).
func (g *Gossip) suspectLocked(inc uint32, id, from []byte, confirm bool) {
	m := g.members[string(id)]
	if m == nil || inc < m.inc {
		return
	}
	if m == g.self {
		if !g.leaving {
			g.refuteLocked(inc, true)
		}
		return
	}
	switch m.state {
	case StateSuspect:
		if inc > m.inc {
			m.inc = inc
		}
		if confirm && m.susp != nil && m.susp.confirm(string(from)) {
			// A new independent suspicion: pass it on so that the others'
			// timers shrink too.
			g.queue.push(m.id, appendAccusation(nil, msgSuspect, inc, m.id, string(from)), false)
		}
		return
	case StateDead, StateLeft:
		return
	}
	m.inc = inc
	m.state, m.since = StateSuspect, g.clock.Now()
	g.startSuspicionLocked(m, string(from))
	g.queue.push(m.id, appendAccusation(nil, msgSuspect, inc, m.id, string(from)), false)
	g.emitLocked(EventSuspect, m, nil)
}

// startSuspicionLocked arms m's suspicion timer; when it fires with m still
// suspect at the same incarnation, this node declares m dead.
func (g *Gossip) startSuspicionLocked(m *member, from string) {
	n := g.live
	k := g.cfg.SuspicionConfirmations
	if n-2 < k {
		k = 0 // too few members to expect confirmations
	}
	lo := suspicionMin(g.cfg.SuspicionMult, n, g.cfg.ProbeInterval)
	hi := time.Duration(g.cfg.SuspicionMaxTimeoutMult) * lo
	if g.cfg.DisableLifeguard {
		k = 0
	}
	inc := m.inc
	var s *suspicion
	fire := func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.closed || m.susp != s || m.state != StateSuspect || m.inc != inc {
			return
		}
		g.stats.declaredDead.Add(1)
		g.deadLocked(inc, []byte(m.id), []byte(g.id))
	}
	s = newSuspicion(g.clock, from, k, lo, hi, fire)
	m.susp = s
}

// deadLocked applies a dead claim by node from.
func (g *Gossip) deadLocked(inc uint32, id, from []byte) {
	m := g.members[string(id)]
	if m == nil || inc < m.inc || m.state == StateDead || m.state == StateLeft {
		return
	}
	if m == g.self {
		if !g.leaving {
			g.refuteLocked(inc, true)
		}
		return
	}
	if m.susp != nil {
		m.susp.stop()
		m.susp = nil
	}
	m.inc = inc
	m.state, m.since = StateDead, g.clock.Now()
	g.live--
	g.queue.push(m.id, appendAccusation(nil, msgDead, inc, m.id, string(from)), false)
	g.emitLocked(EventDead, m, nil)
}

// leaveLocked applies a member's own leave.
func (g *Gossip) leaveLocked(inc uint32, id []byte) {
	m := g.members[string(id)]
	if m == nil || inc < m.inc || m.state == StateLeft {
		return
	}
	if m == g.self {
		if !g.leaving {
			g.refuteLocked(inc, true)
		}
		return
	}
	if m.susp != nil {
		m.susp.stop()
		m.susp = nil
	}
	if m.live() {
		g.live--
	}
	m.inc = inc
	m.state, m.since = StateLeft, g.clock.Now()
	g.queue.push(m.id, appendLeave(nil, inc, m.id), false)
	g.emitLocked(EventLeft, m, nil)
}

// healthDeltaLocked moves the Lifeguard health score, within its bounds.
func (g *Gossip) healthDeltaLocked(d int) {
	if g.cfg.DisableLifeguard {
		return
	}
	g.health = min(max(g.health+d, 0), g.cfg.AwarenessMaxMultiplier-1)
}
