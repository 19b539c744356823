package gossip

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/klauspost/compress/s2"
)

// Dissemination and anti-entropy (PROTOCOL.md §5.2, §5.3).

// gossipTickLocked sends the queued broadcasts to GossipNodes random
// members (live ones, and the recently dead so they learn it and refute).
func (g *Gossip) gossipTickLocked() {
	g.timers[timerGossip] = g.afterLocked(g.cfg.GossipInterval, g.gossipTickLocked)
	if g.queue.len() == 0 {
		return
	}
	now := g.clock.Now()
	targets := g.randomMembersLocked(g.cfg.GossipNodes, func(m *member) bool {
		return m.live() || (m.state == StateDead && now.Sub(m.since) < g.cfg.GossipToTheDeadTime)
	})
	for _, m := range targets {
		if g.queue.len() == 0 {
			break
		}
		g.sendLocked(m.addr, g.beginPacket())
	}
}

// pushPullScale stretches the push-pull interval beyond 32 members
// (memberlist's pushPullScale), so that the sync traffic of the whole
// cluster grows as n log n, not n².
func pushPullScale(interval time.Duration, n int) time.Duration {
	const threshold = 32
	if n <= threshold {
		return interval
	}
	mult := math.Ceil(math.Log2(float64(n))-math.Log2(threshold)) + 1
	return time.Duration(mult) * interval
}

// pushPullTickLocked syncs the full state with one random live member, and
// saves the member list.
func (g *Gossip) pushPullTickLocked() {
	g.timers[timerPushPull] = g.afterLocked(pushPullScale(g.cfg.PushPullInterval, g.live), g.pushPullTickLocked)
	if ms := g.randomMembersLocked(1, func(m *member) bool { return m.state == StateAlive }); len(ms) == 1 {
		g.pushPullLocked(ms[0].addr, false, nil)
	}
	if g.cfg.DataDir != "" {
		g.save = g.snapshotLocked()
	}
}

// reconnectTickLocked pings a random dead member with the news that it is
// dead: if it is in fact alive (a healed partition, a restarted node that
// missed it), it refutes, and the answer carries its alive back. It also
// forgets members dead or left for longer than their retention.
func (g *Gossip) reconnectTickLocked() {
	g.timers[timerReconnect] = g.afterLocked(g.cfg.ReconnectInterval, g.reconnectTickLocked)
	now := g.clock.Now()
	g.reapLocked(now)
	ms := g.randomMembersLocked(1, func(m *member) bool { return m.state == StateDead })
	if len(ms) == 0 {
		return
	}
	m := ms[0]
	p := appendAccusation(g.beginPacket(), msgDead, m.inc, m.id, g.id)
	p = appendPing(p, g.nextSeqLocked(), m.id, g.id)
	g.sendLocked(m.addr, p)
}

// reapLocked forgets members dead or left for longer than their retention.
func (g *Gossip) reapLocked(now time.Time) {
	keep := g.list[:0]
	for _, m := range g.list {
		gone := (m.state == StateDead && now.Sub(m.since) > g.cfg.DeadRetention) ||
			(m.state == StateLeft && now.Sub(m.since) > g.cfg.LeftRetention)
		if gone && m != g.self {
			delete(g.members, m.id)
			g.queue.drop(m.id)
			continue
		}
		keep = append(keep, m)
	}
	clear(g.list[len(keep):])
	g.list = keep
}

// joinTickLocked: while no other member is live, contact the seeds and the
// saved members.
func (g *Gossip) joinTickLocked() {
	g.timers[timerJoin] = g.afterLocked(g.cfg.JoinRetryInterval, g.joinTickLocked)
	if g.live > 1 || g.joining > 0 {
		return
	}
	// Every seed, and a few of the saved members (a restarted node of a
	// large cluster need not contact all of them).
	targets := append([]string(nil), g.cfg.Seeds...)
	for _, i := range g.rng.Perm(len(g.rejoin))[:min(len(g.rejoin), rejoinFanout)] {
		targets = append(targets, g.rejoin[i])
	}
	seen := map[string]bool{g.addr: true}
	for _, a := range targets {
		if seen[a] {
			continue
		}
		seen[a] = true
		g.joining++
		g.pushPullLocked(a, true, func(err error) {
			g.joining--
			if err != nil {
				g.log.Debug("gossip: join attempt failed", "addr", a, "err", err)
			}
		})
	}
}

// discoverLocked syncs with addr, a prober this node does not know, at most
// once per probe interval.
func (g *Gossip) discoverLocked(addr string) {
	now := g.clock.Now()
	if g.discovering || g.leaving || now.Sub(g.discovered) < g.cfg.ProbeInterval {
		return
	}
	g.discovering, g.discovered = true, now
	g.stats.discoveries.Add(1)
	g.pushPullLocked(addr, false, func(error) { g.discovering = false })
}

// rejoinFanout is how many saved members one join attempt contacts.
const rejoinFanout = 3

// pushPullLocked sends this node's full state to addr and merges the
// answer. done, if set, is called with mu held when it is over.
func (g *Gossip) pushPullLocked(addr string, join bool, done func(error)) {
	req := g.keys.seal(nil, g.stateRequestLocked(join), g.ad)
	g.stats.exchangesSent.Add(1)
	g.stats.exchangeBytesSent.Add(int64(len(req)))
	err := g.tr.Call(addr, req, g.cfg.ExchangeTimeout, func(resp []byte, err error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.closed {
			err = ErrShutdown
		}
		if err == nil {
			err = g.mergeResponseLocked(resp)
		}
		if done != nil {
			done(err)
		}
	})
	if err != nil && done != nil {
		done(err)
	}
}

// compressAbove is the push-pull body size from which it is sent as an s2
// block (when that is smaller): names and addresses repeat a lot.
const compressAbove = 512

// stateRequestLocked is a push-pull request or response plaintext.
func (g *Gossip) stateRequestLocked(join bool) []byte {
	body := g.appendStateLocked(nil, join)
	if len(body) >= compressAbove {
		if c := s2.Encode(nil, body); len(c) < len(body) {
			return append(beginRequest(nil, msgPushPullS2), c...)
		}
	}
	return append(beginRequest(nil, msgPushPull), body...)
}

// stateBody returns the push-pull body of a request or response of type t.
func stateBody(t msgType, body []byte) ([]byte, error) {
	switch t {
	case msgPushPull:
		return body, nil
	case msgPushPullS2:
		// The decoded length is a field: bound it before allocating, by
		// the largest state and by a compression ratio no honest state
		// reaches.
		n, err := s2.DecodedLen(body)
		if err != nil || n > maxRequestSize || n > 32*len(body)+4096 {
			return nil, errMalformed
		}
		return s2.Decode(make([]byte, n), body)
	}
	return nil, errMalformed
}

// appendStateLocked appends a push-pull body: every member, this node
// included.
func (g *Gossip) appendStateLocked(dst []byte, join bool) []byte {
	dst = appendPushPullHeader(dst, join, g.id, len(g.list))
	for _, m := range g.list {
		dst = appendPushPullEntry(dst, m.state.wire(), m.inc, m.proto, m.id, m.addr, m.meta)
	}
	return dst
}

var errBadExchange = errors.New("gossip: bad exchange")

// mergeResponseLocked merges a push-pull answer.
func (g *Gossip) mergeResponseLocked(resp []byte) error {
	plain, _, err := g.keys.open(nil, resp, g.ad)
	if err != nil {
		g.stats.decryptFailures.Add(1)
		return err
	}
	t, body, err := parseRequest(plain)
	if err == nil {
		body, err = stateBody(t, body)
	}
	if err != nil {
		g.stats.malformed.Add(1)
		return fmt.Errorf("%w: not a push-pull answer", errBadExchange)
	}
	return g.mergeStateLocked(body)
}

// mergeStateLocked applies a remote state (memberlist's mergeState): alive
// and left entries as such; a remote suspect or dead entry only as a
// suspicion, because the sender may have a stale view (a healed partition)
// and a suspicion gives the member the chance to refute. What is news here
// is passed on: after simultaneous joins, that redundancy is what reaches
// the nodes whose partial views the epidemic missed.
func (g *Gossip) mergeStateLocked(body []byte) error {
	_, err := parsePushPull(body, func(h pushPullHeader, state uint8, a alive) {
		switch state {
		case wireAlive:
			g.aliveLocked(a)
		case wireLeft:
			g.leaveLocked(a.inc, a.id)
		default:
			g.suspectLocked(a.inc, a.id, h.from, false)
		}
	})
	if err != nil {
		g.stats.malformed.Add(1)
	}
	return err
}

// handleRequest answers an exchange: a push-pull (answered with this
// node's state, then merged) or a fallback probe (answered with an ack).
func (g *Gossip) handleRequest(req []byte) ([]byte, error) {
	g.stats.exchangesRecv.Add(1)
	if len(req) > maxRequestSize {
		g.stats.oversize.Add(1)
		return nil, errBadExchange
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, ErrShutdown
	}
	plain, nonce, err := g.keys.open(nil, req, g.ad)
	if err != nil {
		g.stats.decryptFailures.Add(1)
		return nil, errBadExchange
	}
	if g.replay.seen(nonce) {
		g.stats.replayed.Add(1)
		return nil, errBadExchange
	}
	t, body, err := parseRequest(plain)
	if err != nil {
		g.stats.malformed.Add(1)
		return nil, errBadExchange
	}
	var resp []byte
	switch t {
	case msgPing:
		p, err := parsePing(body)
		if err != nil || string(p.target) != g.id {
			g.stats.malformed.Add(1)
			return nil, errBadExchange
		}
		resp = appendSeqBody(beginRequest(nil, msgAck), p.seq)
	case msgPushPull, msgPushPullS2:
		state, err := stateBody(t, body)
		if err != nil {
			g.stats.malformed.Add(1)
			return nil, errBadExchange
		}
		// Answer with the state before the merge, as memberlist does.
		resp = g.stateRequestLocked(false)
		if err := g.mergeStateLocked(state); err != nil {
			return nil, errBadExchange
		}
	default:
		g.stats.unknown.Add(1)
		return nil, errBadExchange
	}
	sealed := g.keys.seal(nil, resp, g.ad)
	g.stats.exchangeBytesSent.Add(int64(len(sealed)))
	return sealed, nil
}

// maxRequestSize bounds an exchange, and a decompressed push-pull state:
// the RPC's default largest message.
const maxRequestSize = 16 << 20

func appendSeqBody(dst []byte, seq uint32) []byte {
	return append(dst, byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq))
}
