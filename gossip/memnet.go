package gossip

import (
	"math/rand/v2"
	"sync"
	"time"
)

// MemNetwork is a simulated network for gossip nodes on one VirtualClock:
// datagrams are lost with a seeded probability (per network or per link),
// delayed by a seeded amount in a range (so they can be reordered), and
// blocked between partitioned groups; a node can be stalled for a while.
// Exchanges (Call) are reliable but also delayed, and blocked by
// partitions (they then time out). With one seed and the same calls in the
// same order, a run is exactly reproducible.
//
// Everything runs on the goroutine that runs the clock; the methods may be
// called between runs.
type MemNetwork struct {
	clock *VirtualClock

	mu       sync.Mutex
	rng      *rand.Rand
	nodes    map[string]*MemTransport
	loss     float64
	minDelay time.Duration
	maxDelay time.Duration
	linkLoss map[[2]string]float64
	group    map[string]int // partition group of each address; absent: 0
}

// NewMemNetwork returns a lossless network with delays of 1-5 ms.
func NewMemNetwork(clock *VirtualClock, seed uint64) *MemNetwork {
	return &MemNetwork{
		clock:    clock,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		nodes:    map[string]*MemTransport{},
		minDelay: time.Millisecond,
		maxDelay: 5 * time.Millisecond,
		linkLoss: map[[2]string]float64{},
		group:    map[string]int{},
	}
}

// Clock is the clock a node at addr must use (its domain of the network's
// clock), so that Stall holds its timers as well as its traffic.
func (n *MemNetwork) Clock(addr string) Clock { return n.clock.In(addr) }

// Transport returns a new endpoint at addr, replacing any closed one.
func (n *MemNetwork) Transport(addr string) *MemTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := &MemTransport{net: n, addr: addr}
	n.nodes[addr] = t
	return t
}

// SetLoss sets the probability that any datagram is lost.
func (n *MemNetwork) SetLoss(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.loss = p
}

// SetLinkLoss sets the loss probability of datagrams between a and b (both
// ways), on top of the network's.
func (n *MemNetwork) SetLinkLoss(a, b string, p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.linkLoss[[2]string{a, b}] = p
	n.linkLoss[[2]string{b, a}] = p
}

// SetDelay sets the range of one-way delays.
func (n *MemNetwork) SetDelay(lo, hi time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.minDelay, n.maxDelay = lo, max(lo, hi)
}

// Partition splits the network: addresses in different groups cannot reach
// each other; addresses in no group form one more group.
func (n *MemNetwork) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.group)
	for i, g := range groups {
		for _, a := range g {
			n.group[a] = i + 1
		}
	}
}

// Heal ends every partition.
func (n *MemNetwork) Heal() { n.Partition() }

// Stall freezes the node at addr for d: nothing of it runs (timers,
// delivery of datagrams and exchanges); what fell due runs when the stall
// ends, in order.
func (n *MemNetwork) Stall(addr string, d time.Duration) { n.clock.Stall(addr, d) }

// route decides a datagram's fate: delivered after delay, or lost.
func (n *MemNetwork) route(from, to string, datagram bool) (time.Duration, *MemTransport, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	dst := n.nodes[to]
	if dst == nil || n.group[from] != n.group[to] {
		return 0, nil, false
	}
	if datagram {
		if p := n.loss; p > 0 && n.rng.Float64() < p {
			return 0, nil, false
		}
		if p := n.linkLoss[[2]string{from, to}]; p > 0 && n.rng.Float64() < p {
			return 0, nil, false
		}
	}
	return n.delayLocked(), dst, true
}

func (n *MemNetwork) delayLocked() time.Duration {
	d := n.minDelay
	if span := n.maxDelay - n.minDelay; span > 0 {
		d += time.Duration(n.rng.Int64N(int64(span) + 1))
	}
	return d
}

func (n *MemNetwork) connected(a, b string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.group[a] == n.group[b]
}

// MemTransport is one node's endpoint on a MemNetwork.
type MemTransport struct {
	net  *MemNetwork
	addr string

	mu     sync.Mutex
	h      Handler
	closed bool
	// Counters of what this endpoint sent.
	packets, bytes int64
}

// Start implements Transport.
func (t *MemTransport) Start(h Handler) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrTransportClosed
	}
	t.h = h
	return nil
}

// Addr implements Transport.
func (t *MemTransport) Addr() string { return t.addr }

func (t *MemTransport) handler() Handler {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	return t.h
}

// WritePacket implements Transport: the datagram is copied and delivered
// later (or lost).
func (t *MemTransport) WritePacket(addr string, b []byte) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrTransportClosed
	}
	t.packets++
	t.bytes += int64(len(b))
	t.mu.Unlock()
	delay, dst, ok := t.net.route(t.addr, addr, true)
	if !ok {
		return nil
	}
	data := append([]byte(nil), b...)
	from := t.addr
	t.net.clock.afterFunc(addr, true, delay, func() {
		if h := dst.handler(); h != nil {
			h.HandlePacket(from, data)
		}
	})
	return nil
}

// Call implements Transport. The request reaches the target after a delay
// (held while the target is stalled); the response comes back after
// another. A partition, a missing target or a stall longer than timeout
// makes the call time out.
func (t *MemTransport) Call(addr string, req []byte, timeout time.Duration, done func([]byte, error)) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrTransportClosed
	}
	t.bytes += int64(len(req))
	t.mu.Unlock()
	var once sync.Once
	finish := func(resp []byte, err error) {
		once.Do(func() {
			if t.handler() != nil {
				done(resp, err)
			}
		})
	}
	clk := t.net.clock
	timer := clk.afterFunc(t.addr, false, timeout, func() { finish(nil, ErrCallTimeout) })
	delay, dst, ok := t.net.route(t.addr, addr, false)
	if !ok {
		return nil // times out, as a dial into a partition does
	}
	data := append([]byte(nil), req...)
	from := t.addr
	clk.afterFunc(addr, true, delay, func() {
		h := dst.handler()
		if h == nil {
			return
		}
		resp, err := h.HandleRequest(data)
		resp = append([]byte(nil), resp...)
		dst.mu.Lock()
		dst.bytes += int64(len(resp))
		dst.mu.Unlock()
		back, _, ok := t.net.route(addr, from, false)
		if !ok || !t.net.connected(addr, from) {
			return
		}
		clk.afterFunc(from, true, back, func() {
			timer.Stop()
			finish(resp, err)
		})
	})
	return nil
}

// Close implements Transport.
func (t *MemTransport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	t.h = nil
	return nil
}

// Sent reports the datagrams and the bytes (datagrams, requests and
// responses) this endpoint sent.
func (t *MemTransport) Sent() (packets, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.packets, t.bytes
}
