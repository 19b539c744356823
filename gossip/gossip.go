package gossip

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Errors of the public API.
var (
	// ErrShutdown is returned by calls on a node that has shut down or left.
	ErrShutdown = errors.New("gossip: node shut down")
	// ErrPayloadTooLarge: a broadcast or metadata that cannot fit in one
	// packet is refused when it is queued.
	ErrPayloadTooLarge = errors.New("gossip: payload too large for one packet")
	// ErrQueueFull: too many broadcasts are waiting to be sent.
	ErrQueueFull = errors.New("gossip: broadcast queue full")
	// ErrJoin wraps the errors of a Join that reached no one.
	ErrJoin = errors.New("gossip: join failed")
)

// maxMembers bounds the member list (dead and left members included).
const maxMembers = 1 << 16

// maxRelays bounds the indirect probes this node makes for others at once.
const maxRelays = 256

// Gossip is one node of a SWIM membership with the Lifeguard refinements.
// Create it with New; it runs until Shutdown or Leave. Safe for concurrent
// use.
//
// The protocol core has no goroutine of its own: it runs on the transport's
// delivery (datagrams, requests, exchange results) and on the clock's timer
// callbacks, each of which holds mu while it works. That is what lets a
// simulation run on one goroutine over a VirtualClock and a MemNetwork.
//
// Lock order: Gossip.mu, then any of Subscription.mu, Keyring.mu,
// saveMu, the clock's and the transport's own locks (UDPTransport's
// include its pool's: Connected asks the pool). A transport never
// holds its lock while it calls the Handler or a done callback, and
// Transport.Close is never called with mu held (it waits for handlers).
type Gossip struct {
	// Immutable after New.
	cfg   Config
	tr    Transport
	clock Clock
	keys  *Keyring
	ad    []byte
	log   *slog.Logger
	id    string
	addr  string
	done  chan struct{} // closed by Shutdown
	stats counters

	saveMu sync.Mutex // serializes writes of the data directory

	mu sync.Mutex
	// Guarded by mu.
	rng      *rand.Rand
	self     *member
	members  map[string]*member
	list     []*member // every member, self included, in order of arrival
	live     int       // members alive or suspect, self included
	order    []*member // probe order: randomized round robin
	orderIdx int
	probe    *probeRun
	seq      uint32
	acks     map[uint32]*ackWait
	relays   int
	queue    queue
	health   int // Lifeguard local health score, 0 (healthy) to AwarenessMaxMultiplier-1
	subs     []*Subscription
	replay   replayFilter
	userSeq  uint64
	userSeen seenSet
	timers   [numTimers]Timer
	rejoin   []string // saved members' addresses, tried while alone
	joining  int      // automatic join exchanges in flight
	// discovering: a push-pull with an unknown prober is in flight;
	// discovered: when the last one started (at most one per probe
	// interval).
	discovering bool
	discovered  time.Time
	closed      bool
	leaving     bool
	save        *savedState // a snapshot to write once mu is released
	out         []byte      // outgoing plaintext
	sealed      []byte      // outgoing envelope
	in          []byte      // incoming plaintext
}

// The periodic timers.
const (
	timerProbe = iota
	timerGossip
	timerPushPull
	timerReconnect
	timerJoin
	numTimers
)

// New starts a node on tr: it starts the transport, and, if there are
// Seeds or members saved in DataDir, joins through them in the background.
func New(cfg Config, tr Transport) (*Gossip, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	keys := cfg.Keyring
	if keys == nil {
		if keys, err = NewKeyring(cfg.ClusterKey); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	saved, err := loadState(cfg.DataDir)
	if err != nil {
		cfg.Logger.Warn("gossip: ignoring the saved state", "dir", cfg.DataDir, "err", err)
		saved = nil
	}
	id := cfg.NodeID
	if id == "" && saved != nil {
		id = saved.ID
	}
	if id == "" {
		var b [8]byte
		_, _ = crand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	seed := cfg.Seed
	if seed == 0 {
		var b [8]byte
		_, _ = crand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	g := &Gossip{
		cfg:     cfg,
		tr:      tr,
		clock:   cfg.Clock,
		keys:    keys,
		ad:      sealAD(cfg.ClusterName),
		log:     cfg.Logger,
		id:      id,
		done:    make(chan struct{}),
		rng:     rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)),
		members: map[string]*member{},
		acks:    map[uint32]*ackWait{},
		out:     make([]byte, 0, cfg.MaxPacketSize),
		sealed:  make([]byte, 0, cfg.MaxPacketSize),
		in:      make([]byte, 0, cfg.MaxPacketSize),
	}
	// Traffic that arrives before the node is set up waits for mu.
	g.mu.Lock()
	if err := tr.Start(netHandler{g}); err != nil {
		g.mu.Unlock()
		return nil, err
	}
	g.addr = tr.Addr()
	if len(g.addr) > MaxAddrLen {
		g.closed = true
		g.mu.Unlock()
		_ = tr.Close() // waits for handlers, which wait for mu
		return nil, fmt.Errorf("%w: address %q too long", ErrConfig, g.addr)
	}
	defer g.mu.Unlock()
	if saved != nil {
		for _, m := range saved.Members {
			if m.ID != id && m.Addr != g.addr {
				g.rejoin = append(g.rejoin, m.Addr)
			}
		}
	}
	// User broadcasts are numbered from the clock, so that a restarted
	// node's numbers are not taken for its previous life's.
	g.userSeq = uint64(g.clock.Now().UnixNano())
	g.self = &member{id: id, addr: g.addr, meta: bytes.Clone(cfg.Meta), inc: 1, proto: protoVersion, state: StateAlive, since: g.clock.Now()}
	g.addMemberLocked(g.self)
	g.live = 1
	// Announce this node once it knows others (memberlist's setAlive): the
	// joiner spreads its own alive along with the seed.
	g.broadcastAliveLocked(g.self)
	// Stagger the periodic work so that nodes started together do not
	// probe and gossip in lockstep.
	g.timers[timerProbe] = g.afterLocked(g.jitterLocked(cfg.ProbeInterval), g.probeTickLocked)
	g.timers[timerGossip] = g.afterLocked(g.jitterLocked(cfg.GossipInterval), g.gossipTickLocked)
	if cfg.PushPullInterval > 0 {
		g.timers[timerPushPull] = g.afterLocked(g.jitterLocked(cfg.PushPullInterval), g.pushPullTickLocked)
	}
	if cfg.ReconnectInterval > 0 {
		g.timers[timerReconnect] = g.afterLocked(g.jitterLocked(cfg.ReconnectInterval), g.reconnectTickLocked)
	}
	g.timers[timerJoin] = g.afterLocked(0, g.joinTickLocked)
	if cfg.DataDir != "" { // keep a generated ID from the start
		if err := g.writeState(g.snapshotLocked()); err != nil {
			g.log.Warn("gossip: saving the state", "dir", cfg.DataDir, "err", err)
		}
	}
	return g, nil
}

// jitterLocked returns a random duration in [0, d).
func (g *Gossip) jitterLocked(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(g.rng.Int64N(int64(d)))
}

// afterLocked schedules f on the clock; f runs with mu held, and not at all
// once the node has shut down.
func (g *Gossip) afterLocked(d time.Duration, f func()) Timer {
	return g.clock.AfterFunc(d, func() {
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			return
		}
		f()
		save := g.save
		g.save = nil
		g.mu.Unlock()
		if save != nil {
			if err := g.writeState(save); err != nil {
				g.log.Warn("gossip: saving the state", "dir", g.cfg.DataDir, "err", err)
			}
		}
	})
}

// ID is this node's ID.
func (g *Gossip) ID() string { return g.id }

// Addr is this node's address ("host:port").
func (g *Gossip) Addr() string { return g.addr }

// Keyring is the keyring the node encrypts with; rotate keys on it.
func (g *Gossip) Keyring() *Keyring { return g.keys }

// Members returns every known member, this node included, sorted by ID.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	out := make([]Member, 0, len(g.list))
	for _, m := range g.list {
		out = append(out, m.snapshot())
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Member returns the member with the given ID.
func (g *Gossip) Member(id string) (Member, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.members[id]
	if m == nil {
		return Member{}, false
	}
	return m.snapshot(), true
}

// NumAlive is the number of members alive or suspect, this node included.
func (g *Gossip) NumAlive() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.live
}

// Health is the Lifeguard local health score: 0 when healthy, up to
// AwarenessMaxMultiplier-1; probes run that many times slower (plus one).
func (g *Gossip) Health() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.health
}

// UpdateMeta replaces this node's metadata and announces it (with a higher
// incarnation, so the newest version wins everywhere).
func (g *Gossip) UpdateMeta(meta []byte) error {
	if len(meta) > MaxMetaLen {
		return ErrPayloadTooLarge
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrShutdown
	}
	g.self.meta = bytes.Clone(meta)
	g.self.inc++
	g.broadcastAliveLocked(g.self)
	return nil
}

// Broadcast queues an application message for every member: it is
// piggybacked a bounded number of times and delivered once per node as an
// EventUser (not on this node). A payload that cannot fit in one packet is
// refused with ErrPayloadTooLarge.
func (g *Gossip) Broadcast(payload []byte) error {
	if userOverhead(g.id)+len(payload) > g.plainBudget()-1 {
		return ErrPayloadTooLarge
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.leaving {
		return ErrShutdown
	}
	if g.queue.users >= maxQueuedUser {
		return ErrQueueFull
	}
	g.userSeq++
	g.userSeen.add(g.id, g.userSeq)
	g.queue.push("", appendUser(nil, g.id, g.userSeq, payload), false)
	return nil
}

// MaxBroadcastSize is the largest payload Broadcast accepts.
func (g *Gossip) MaxBroadcastSize() int { return g.plainBudget() - 1 - userOverhead(g.id) }

// plainBudget is the largest plaintext of one packet.
func (g *Gossip) plainBudget() int { return g.cfg.MaxPacketSize - envelopeOverhead }

// Join contacts each address (a member's "host:port") with a push-pull
// exchange, in parallel, and returns how many answered. It fails only if
// none did (or ctx ended first).
func (g *Gossip) Join(ctx context.Context, addrs ...string) (int, error) {
	results := make(chan error, len(addrs))
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return 0, ErrShutdown
	}
	n := 0
	for _, a := range addrs {
		if a == g.addr {
			continue
		}
		n++
		g.pushPullLocked(a, true, func(err error) {
			if err != nil {
				err = fmt.Errorf("%s: %w", a, err)
			}
			results <- err
		})
	}
	g.mu.Unlock()
	ok := 0
	var errs []error
	for range n {
		select {
		case err := <-results:
			if err == nil {
				ok++
			} else {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			return ok, ctx.Err()
		case <-g.done:
			return ok, ErrShutdown
		}
	}
	if ok == 0 && n > 0 {
		return 0, fmt.Errorf("%w: %w", ErrJoin, errors.Join(errs...))
	}
	return ok, nil
}

// Leave leaves the cluster gracefully: it tells several members at once
// that this node left (they record it as Left, not Dead, and spread it),
// then shuts down.
func (g *Gossip) Leave() error {
	g.mu.Lock()
	if g.closed || g.leaving {
		g.mu.Unlock()
		return ErrShutdown
	}
	g.leaving = true
	g.self.state = StateLeft
	msg := appendLeave(nil, g.self.inc, g.id)
	n := max(g.retransmitLimitLocked(), g.cfg.GossipNodes)
	for _, m := range g.randomMembersLocked(n, func(m *member) bool { return m.state == StateAlive }) {
		p := append(g.beginPacket(), msg...)
		g.sendLocked(m.addr, p)
	}
	g.mu.Unlock()
	return g.Shutdown()
}

// Shutdown stops the node without leaving: the others will find it dead.
// It closes the transport and every subscription, and saves the state to
// DataDir. It returns once nothing of the node runs any more.
func (g *Gossip) Shutdown() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	close(g.done)
	for _, t := range g.timers {
		if t != nil {
			t.Stop()
		}
	}
	if g.probe != nil {
		g.probe.stop()
	}
	for _, w := range g.acks {
		if w.relay != nil && w.relay.timer != nil {
			w.relay.timer.Stop()
		}
	}
	for _, m := range g.list {
		if m.susp != nil {
			m.susp.stop()
		}
	}
	subs := g.subs
	g.subs = nil
	var save *savedState
	if g.cfg.DataDir != "" {
		save = g.snapshotLocked()
	}
	g.mu.Unlock()
	for _, s := range subs {
		s.closeWith(nil)
	}
	err := g.tr.Close()
	if save != nil {
		if werr := g.writeState(save); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// --- sending -----------------------------------------------------------------

// beginPacket starts a packet plaintext in the node's buffer.
func (g *Gossip) beginPacket() []byte { return append(g.out[:0], protoVersion) }

// sendLocked fills the packet plain (from beginPacket) with queued
// broadcasts up to the packet size, seals it and sends it to addr.
func (g *Gossip) sendLocked(addr string, plain []byte) {
	plain = g.queue.fill(plain, g.plainBudget()-len(plain), g.retransmitLimitLocked())
	g.out = plain[:0]
	g.sealed = g.keys.seal(g.sealed[:0], plain, g.ad)
	g.stats.packetsSent.Add(1)
	g.stats.bytesSent.Add(int64(len(g.sealed)))
	if err := g.tr.WritePacket(addr, g.sealed); err != nil {
		g.stats.sendErrors.Add(1)
	}
}

func (g *Gossip) retransmitLimitLocked() int { return retransmitLimit(g.cfg.RetransmitMult, g.live) }

func (g *Gossip) nextSeqLocked() uint32 {
	g.seq++
	return g.seq
}

// randomMembersLocked picks up to k distinct members other than self that
// pass keep, uniformly (reservoir sampling over the member list).
func (g *Gossip) randomMembersLocked(k int, keep func(*member) bool) []*member {
	var out []*member
	seen := 0
	for _, m := range g.list {
		if m == g.self || !keep(m) {
			continue
		}
		seen++
		if len(out) < k {
			out = append(out, m)
		} else if j := g.rng.IntN(seen); j < k {
			out[j] = m
		}
	}
	return out
}

// addMemberLocked adds m to the list and, at a random place, to the probe
// order (so it is probed within the current round).
func (g *Gossip) addMemberLocked(m *member) {
	g.members[m.id] = m
	g.list = append(g.list, m)
	if m != g.self {
		i := g.rng.IntN(len(g.order) + 1)
		g.order = slices.Insert(g.order, i, m)
	}
}

// --- receiving ---------------------------------------------------------------

// netHandler is the node as the transport sees it.
type netHandler struct{ g *Gossip }

func (h netHandler) HandlePacket(from string, b []byte) { h.g.handlePacket(from, b) }
func (h netHandler) HandleRequest(req []byte) ([]byte, error) {
	return h.g.handleRequest(req)
}

// handlePacket authenticates and processes one datagram. Hostile input is
// dropped and counted: nothing is logged per packet, nothing is allocated
// before the envelope authenticates.
func (g *Gossip) handlePacket(from string, b []byte) {
	g.stats.packetsRecv.Add(1)
	g.stats.bytesRecv.Add(int64(len(b)))
	if len(b) > g.cfg.MaxPacketSize {
		g.stats.oversize.Add(1)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	plain, nonce, err := g.keys.open(g.in[:0], b, g.ad)
	if err != nil {
		g.stats.decryptFailures.Add(1)
		return
	}
	g.in = plain[:0]
	if g.replay.seen(nonce) {
		g.stats.replayed.Add(1)
		return
	}
	if len(plain) < 1 || plain[0] == 0 {
		g.stats.malformed.Add(1)
		return
	}
	// Check the framing of the whole packet before acting on any of it.
	for rest := plain[1:]; len(rest) > 0; {
		var err error
		if _, _, rest, err = nextMsg(rest); err != nil {
			g.stats.malformed.Add(1)
			return
		}
	}
	for rest := plain[1:]; len(rest) > 0; {
		t, body, next, _ := nextMsg(rest)
		rest = next
		if err := g.handleMsgLocked(from, t, body); err != nil {
			g.stats.malformed.Add(1)
		}
	}
}

// handleMsgLocked processes one message of a packet from addr.
func (g *Gossip) handleMsgLocked(from string, t msgType, body []byte) error {
	switch t {
	case msgPing:
		p, err := parsePing(body)
		if err != nil {
			return err
		}
		if string(p.target) != g.id {
			g.stats.misdirected.Add(1)
			return nil
		}
		ack := g.beginPacket()
		m := g.members[string(p.source)]
		if m != nil && m.state == StateSuspect && !g.cfg.DisableLifeguard {
			// The prober is a member we suspect: tell it (the buddy
			// system, on the ack), so that it refutes, or corrects our
			// stale view.
			ack = appendAccusation(ack, msgSuspect, m.inc, m.id, g.id)
		}
		g.sendLocked(from, appendSeqMsg(ack, msgAck, p.seq))
		if m == nil || m.state == StateDead {
			// A member we do not know (or think dead) probes us: our view
			// missed it. Sync with it rather than wait for anti-entropy.
			g.discoverLocked(from)
		}
	case msgIndirectPing:
		p, err := parseIndirectPing(body)
		if err != nil {
			return err
		}
		g.relayLocked(from, p)
	case msgAck:
		seq, err := parseSeqMsg(body)
		if err != nil {
			return err
		}
		g.ackLocked(seq)
	case msgNack:
		seq, err := parseSeqMsg(body)
		if err != nil {
			return err
		}
		g.nackLocked(seq)
	case msgAlive:
		a, err := parseAlive(body)
		if err != nil {
			return err
		}
		g.aliveLocked(a)
	case msgSuspect, msgDead:
		a, err := parseAccusation(body)
		if err != nil {
			return err
		}
		if m := g.members[string(a.id)]; m != nil && a.inc < m.inc && m == g.self && !g.leaving {
			// A stale accusation of this node: the sender missed the
			// refutation. Tell it directly, before its timer runs out.
			g.stats.corrections.Add(1)
			g.sendLocked(from, appendAlive(g.beginPacket(), m.inc, m.proto, m.id, m.addr, m.meta))
			return nil
		} else if m != nil && m.state == StateLeft && a.inc <= m.inc {
			// The sender missed the leave (it is accusing a member that
			// left): tell it, rather than let it declare the member dead.
			g.stats.corrections.Add(1)
			g.sendLocked(from, appendLeave(g.beginPacket(), m.inc, m.id))
			return nil
		}
		if t == msgSuspect {
			g.suspectLocked(a.inc, a.id, a.from, true)
		} else {
			g.deadLocked(a.inc, a.id, a.from)
		}
	case msgLeave:
		l, err := parseLeave(body)
		if err != nil {
			return err
		}
		g.leaveLocked(l.inc, l.id)
	case msgUser:
		u, err := parseUser(body)
		if err != nil {
			return err
		}
		g.userLocked(u)
	default:
		g.stats.unknown.Add(1) // a newer version's message: skipped
	}
	return nil
}

// seenSet remembers (origin, seq) of recent user broadcasts, in two bounded
// generations like replayFilter.
type seenSet struct {
	cur, prev map[string]struct{}
	key       []byte
}

func (s *seenSet) keyOf(origin string, seq uint64) []byte {
	s.key = binary.BigEndian.AppendUint64(append(s.key[:0], origin...), seq)
	return s.key
}

func (s *seenSet) has(origin string, seq uint64) bool {
	k := s.keyOf(origin, seq)
	_, a := s.cur[string(k)]
	_, b := s.prev[string(k)]
	return a || b
}

func (s *seenSet) add(origin string, seq uint64) {
	if s.cur == nil {
		s.cur, s.prev = map[string]struct{}{}, map[string]struct{}{}
	}
	if len(s.cur) >= replayGeneration {
		s.cur, s.prev = s.prev, s.cur
		clear(s.cur)
	}
	s.cur[string(s.keyOf(origin, seq))] = struct{}{}
}

// userLocked delivers a user broadcast once and passes it on.
func (g *Gossip) userLocked(u user) {
	origin := string(u.origin) // allocation: only for a message that authenticated
	if origin == g.id || g.userSeen.has(origin, u.seq) {
		return
	}
	g.userSeen.add(origin, u.seq)
	payload := bytes.Clone(u.payload)
	if g.queue.users < maxQueuedUser {
		g.queue.push("", appendUser(nil, origin, u.seq, payload), false)
	}
	m := g.members[origin]
	if m == nil {
		m = &member{id: origin}
	}
	g.emitLocked(EventUser, m, payload)
}
