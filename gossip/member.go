package gossip

import (
	"fmt"
	"time"
)

// State is a member's state as this node sees it.
type State uint8

const (
	// StateAlive: the member answers (or nobody has reason to doubt it).
	StateAlive State = iota + 1
	// StateSuspect: a probe failed; the member is declared dead when its
	// suspicion times out, unless it refutes first.
	StateSuspect
	// StateDead: the suspicion timed out. A dead member that comes back
	// refutes with a higher incarnation and is alive again.
	StateDead
	// StateLeft: the member left gracefully (Leave).
	StateLeft
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

func (s State) wire() uint8 {
	switch s {
	case StateSuspect:
		return wireSuspect
	case StateDead:
		return wireDead
	case StateLeft:
		return wireLeft
	}
	return wireAlive
}

// Member is a snapshot of one member.
type Member struct {
	// ID is the member's node ID.
	ID string
	// Addr is where the member is reached ("host:port"): its RPC address
	// and, on the same port number, its gossip address.
	Addr string
	// Meta is the member's metadata; it is shared, do not modify it.
	Meta []byte
	// Incarnation versions the member's claims about itself: it grows when
	// the member refutes a suspicion or changes its metadata.
	Incarnation uint32
	// State is the member's state; Since is when this node saw it change.
	State State
	Since time.Time
}

// member is the state of one member (guarded by Gossip.mu).
type member struct {
	id    string
	addr  string
	meta  []byte // immutable once set; replaced, never modified
	inc   uint32
	proto uint8
	state State
	since time.Time
	susp  *suspicion // while StateSuspect
}

func (m *member) snapshot() Member {
	return Member{ID: m.id, Addr: m.addr, Meta: m.meta, Incarnation: m.inc, State: m.state, Since: m.since}
}

func (m *member) live() bool { return m.state == StateAlive || m.state == StateSuspect }
