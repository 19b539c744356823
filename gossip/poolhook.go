package gossip

import (
	"errors"
	"sync"
)

// PeerMarker is what membership drives in the client side: *pool.Pool
// satisfies it. MarkAlive wakes a parked peer (it is dialed at once);
// MarkDead parks a peer and closes its connections.
type PeerMarker interface {
	MarkAlive(addr string)
	MarkDead(addr string)
}

// PoolHook keeps a pool in step with membership: a member that joins,
// comes back, refutes a suspicion or updates itself is MarkAlive'd; a member
// declared dead or that left is MarkDead'd (by its address, which is its
// RPC address). A suspicion changes nothing: the peer stays usable until
// the suspicion is confirmed.
//
// The hook owns one goroutine, which ends with Close or when the node
// shuts down. If it falls behind (a pool call blocked for long), its
// subscription is dropped and it subscribes again, which replays the
// current membership, so no change is lost.
type PoolHook struct {
	g    *Gossip
	p    PeerMarker
	stop chan struct{}
	once sync.Once
	done chan struct{}
}

// NewPoolHook starts a hook that drives p from g's events, beginning with
// the current membership.
func NewPoolHook(g *Gossip, p PeerMarker) *PoolHook {
	h := &PoolHook{g: g, p: p, stop: make(chan struct{}), done: make(chan struct{})}
	sub := g.Subscribe(0)
	go h.run(sub)
	return h
}

func (h *PoolHook) run(sub *Subscription) {
	defer close(h.done)
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				if errors.Is(sub.Err(), ErrSubscriberLagged) {
					sub = h.g.Subscribe(0)
					continue
				}
				return
			}
			h.apply(ev)
		case <-h.stop:
			sub.Close()
			return
		}
	}
}

func (h *PoolHook) apply(ev Event) {
	switch ev.Kind {
	case EventJoin, EventAlive, EventUpdate:
		h.p.MarkAlive(ev.Member.Addr)
	case EventDead, EventLeft:
		h.p.MarkDead(ev.Member.Addr)
	}
}

// Close stops the hook and waits for its goroutine.
func (h *PoolHook) Close() {
	h.once.Do(func() { close(h.stop) })
	<-h.done
}
