package gossip

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// EventKind says what happened to a member.
type EventKind uint8

const (
	// EventJoin: a member appeared, or came back after being dead or
	// having left.
	EventJoin EventKind = iota + 1
	// EventUpdate: an alive member changed its metadata or address.
	EventUpdate
	// EventSuspect: a member is suspected of having failed.
	EventSuspect
	// EventAlive: a suspected member refuted the suspicion.
	EventAlive
	// EventDead: a member was declared dead.
	EventDead
	// EventLeft: a member left gracefully.
	EventLeft
	// EventUser: an application broadcast arrived (Event.Payload); Member
	// is its origin as far as this node knows it (at least its ID).
	EventUser
)

func (k EventKind) String() string {
	switch k {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventSuspect:
		return "suspect"
	case EventAlive:
		return "alive"
	case EventDead:
		return "dead"
	case EventLeft:
		return "left"
	case EventUser:
		return "user"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is one membership change, or an application broadcast.
type Event struct {
	Kind   EventKind
	Member Member // the member after the change
	// Time is when this node saw the change (its clock).
	Time time.Time
	// Payload is an EventUser's payload; it is shared, do not modify it.
	Payload []byte
}

// ErrSubscriberLagged is the Err of a subscription that was closed because
// its buffer was full: the protocol never waits for a subscriber. Subscribe
// again; the new subscription starts with the current membership.
var ErrSubscriberLagged = errors.New("gossip: subscriber too slow, events dropped")

// Subscription receives events in the order this node saw them, on C.
//
// A subscription starts with the current membership: one event per known
// member other than this node (EventJoin for alive members, and the event
// of the state for the others). Then every change follows, in order, until
// the node shuts down (C is closed, Err is nil), the subscriber calls Close,
// or the subscriber falls behind by more than the buffer: the node never
// blocks on a subscriber, so it then closes C and Err returns
// ErrSubscriberLagged.
type Subscription struct {
	// C delivers the events.
	C <-chan Event
	c chan Event
	g *Gossip

	mu     sync.Mutex // guards err and closing c
	err    error
	closed bool
}

// Err says why C was closed: nil (Close, or the node shut down) or
// ErrSubscriberLagged.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription and closes C.
func (s *Subscription) Close() {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	s.g.unsubscribeLocked(s)
	s.closeWith(nil)
}

func (s *Subscription) closeWith(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.err = err
	close(s.c)
}

// offer delivers ev without blocking; it reports false (and closes the
// subscription) if the buffer is full.
func (s *Subscription) offer(ev Event) bool {
	select {
	case s.c <- ev:
		return true
	default:
		s.closeWith(ErrSubscriberLagged)
		return false
	}
}

// Subscribe returns a subscription whose channel buffers at least buffer
// events (0: Config.EventBuffer), plus the initial membership. On a node
// that has shut down, C is closed at once.
func (g *Gossip) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = g.cfg.EventBuffer
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c := make(chan Event, buffer+len(g.list))
	s := &Subscription{C: c, c: c, g: g}
	if g.closed {
		s.closeWith(nil)
		return s
	}
	now := g.clock.Now()
	for _, m := range g.list {
		if m == g.self {
			continue
		}
		kind := EventJoin
		switch m.state {
		case StateSuspect:
			kind = EventSuspect
		case StateDead:
			kind = EventDead
		case StateLeft:
			kind = EventLeft
		}
		s.c <- Event{Kind: kind, Member: m.snapshot(), Time: now}
	}
	g.subs = append(g.subs, s)
	return s
}

func (g *Gossip) unsubscribeLocked(s *Subscription) {
	for i, x := range g.subs {
		if x == s {
			g.subs = append(g.subs[:i], g.subs[i+1:]...)
			return
		}
	}
}

// emitLocked delivers an event to every subscriber, dropping the ones that
// lag.
func (g *Gossip) emitLocked(kind EventKind, m *member, payload []byte) {
	g.stats.events[kind].Add(1)
	if len(g.subs) == 0 {
		return
	}
	ev := Event{Kind: kind, Member: m.snapshot(), Time: g.clock.Now(), Payload: payload}
	keep := g.subs[:0]
	for _, s := range g.subs {
		if s.offer(ev) {
			keep = append(keep, s)
		}
	}
	clear(g.subs[len(keep):])
	g.subs = keep
}
