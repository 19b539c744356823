package gossipbench

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// faults is one node's share of the network conditions, applied the same
// way to both implementations at their transport boundary:
//
//   - loss: each outgoing datagram is dropped with probability Loss (it is
//     still counted as sent: the node paid for it);
//   - stall: for a while the node neither sends nor receives: outgoing
//     datagrams and incoming datagrams are held and released, in order,
//     when the stall ends; stream dials and incoming streams wait for the
//     end too. The implementation's own timers keep running, as they do in
//     a process whose network is frozen;
//   - counting: UDP payload bytes and datagrams sent, and stream bytes
//     sent (push-pull and fallback probes); and on the wire (wire.go), the
//     bytes and connections of the TCP streams to this node.
type faults struct {
	loss float64

	rngMu sync.Mutex
	rng   *rand.Rand

	udpBytes, udpPackets, streamBytes atomic.Int64
	// wireTCP counts the bytes, both ways, of the TCP connections made to
	// this node, as its relay forwarded them; tcpConns the connections.
	wireTCP, tcpConns atomic.Int64

	stalledNow atomic.Bool // a lock-free hint of stalled

	mu      sync.Mutex
	stalled bool
	held    []func()
	resume  chan struct{} // closed when the current stall ends
}

func newFaults(loss float64, seed uint64) *faults {
	return &faults{loss: loss, rng: rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15+1))}
}

// sentPacket counts a datagram and decides whether the network loses it.
func (f *faults) sentPacket(n int) (lost bool) {
	f.udpBytes.Add(int64(n))
	f.udpPackets.Add(1)
	if f.loss <= 0 {
		return false
	}
	f.rngMu.Lock()
	defer f.rngMu.Unlock()
	return f.rng.Float64() < f.loss
}

// hold queues fn to run when the stall ends and reports true, or reports
// false if the node is not stalled.
func (f *faults) hold(fn func()) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stalled {
		return false
	}
	f.held = append(f.held, fn)
	return true
}

// wait blocks while the node is stalled.
func (f *faults) wait() {
	f.mu.Lock()
	if !f.stalled {
		f.mu.Unlock()
		return
	}
	c := f.resume
	f.mu.Unlock()
	<-c
}

// stall freezes the node's network for d, then releases what was held, in
// order (new traffic keeps queueing behind it until the queue is empty).
func (f *faults) stall(d time.Duration) {
	f.mu.Lock()
	if f.stalled {
		f.mu.Unlock()
		return
	}
	f.stalled = true
	f.stalledNow.Store(true)
	f.resume = make(chan struct{})
	f.mu.Unlock()
	time.AfterFunc(d, f.release)
}

func (f *faults) release() {
	for {
		f.mu.Lock()
		held := f.held
		f.held = nil
		if len(held) == 0 {
			f.stalled = false
			f.stalledNow.Store(false)
			close(f.resume)
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		for _, fn := range held {
			fn()
		}
	}
}

// countConn counts the bytes written on a stream.
type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}
