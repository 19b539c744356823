package gossip

import (
	"container/heap"
	"sync"
	"time"
)

// Clock is gossip's time source. Every protocol timer goes through it, so a
// simulation can run a cluster on a VirtualClock: deterministically, and as
// fast as the CPU allows.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once, d from now, on a goroutine of the clock's
	// choosing (the real clock: its own; a VirtualClock: the one running
	// it).
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending call of a Clock.
type Timer interface {
	// Stop cancels the call; it reports whether it did (false: the call
	// already ran or was stopped).
	Stop() bool
}

// RealClock is the wall clock (time.AfterFunc).
type RealClock struct{}

func (RealClock) Now() time.Time                            { return time.Now() }
func (RealClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// VirtualClock is simulated time for tests and simulations. Time moves only
// when Run, RunFor or RunUntil is called: each pending call runs in order of
// its due time (calls due at the same time in the order they were
// scheduled), on the goroutine that runs the clock, with Now() equal to its
// due time. No wall-clock time passes, so a cluster's minute takes
// milliseconds.
//
// A clock has domains (one per simulated node, see In): a stalled domain
// (Stall) runs nothing until the stall ends. Then it catches up as a paused
// Go process does: its timers that fell due run first, in due order, then
// the deliveries that arrived meanwhile (MemNetwork's datagrams and
// exchanges), in arrival order.
type VirtualClock struct {
	mu      sync.Mutex
	now     time.Time
	seq     uint64
	events  eventHeap
	stalled map[string]time.Time // domain → end of its stall
}

// NewVirtualClock returns a clock whose time starts at start.
func NewVirtualClock(start time.Time) *VirtualClock {
	return &VirtualClock{now: start, stalled: map[string]time.Time{}}
}

type vevent struct {
	when    time.Time
	seq     uint64
	f       func()
	domain  string
	input   bool // a delivery (MemNetwork), not a timer: see Stall
	stopped bool
	fired   bool
	index   int
}

type eventHeap []*vevent

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *eventHeap) Push(x any)   { e := x.(*vevent); e.index = len(*h); *h = append(*h, e) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
func (h eventHeap) peek() *vevent            { return h[0] }
func (c *VirtualClock) pushLocked(e *vevent) { c.seq++; e.seq = c.seq; heap.Push(&c.events, e) }

// Now is the simulated time.
func (c *VirtualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f in the clock's default domain (never stalled).
func (c *VirtualClock) AfterFunc(d time.Duration, f func()) Timer {
	return c.afterFunc("", false, d, f)
}

func (c *VirtualClock) afterFunc(domain string, input bool, d time.Duration, f func()) Timer {
	if d < 0 {
		d = 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &vevent{when: c.now.Add(d), f: f, domain: domain, input: input}
	c.pushLocked(e)
	return &vtimer{c: c, e: e}
}

type vtimer struct {
	c *VirtualClock
	e *vevent
}

func (t *vtimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.e.stopped || t.e.fired {
		return false
	}
	t.e.stopped = true
	return true
}

// In returns the clock of a domain: its calls are held while the domain is
// stalled.
func (c *VirtualClock) In(domain string) Clock { return domainClock{c, domain} }

type domainClock struct {
	c      *VirtualClock
	domain string
}

func (d domainClock) Now() time.Time { return d.c.Now() }
func (d domainClock) AfterFunc(dur time.Duration, f func()) Timer {
	return d.c.afterFunc(d.domain, false, dur, f)
}

// Stall holds every call of domain for d from now (extending a stall in
// progress if it ends earlier).
func (c *VirtualClock) Stall(domain string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	end := c.now.Add(d)
	if cur, ok := c.stalled[domain]; !ok || end.After(cur) {
		c.stalled[domain] = end
	}
}

// step runs the next call due at or before limit; it reports false when
// there is none.
func (c *VirtualClock) step(limit time.Time) bool {
	c.mu.Lock()
	for c.events.Len() > 0 {
		e := c.events.peek()
		if e.when.After(limit) {
			break
		}
		heap.Pop(&c.events)
		if e.stopped {
			continue
		}
		if e.when.After(c.now) {
			c.now = e.when
		}
		if end, ok := c.stalled[e.domain]; ok {
			if end.After(c.now) {
				// Held: run it when the stall ends, after the calls
				// already held (a new sequence number keeps due order);
				// deliveries after every timer.
				e.when = end
				if e.input {
					e.when = end.Add(time.Nanosecond)
				}
				c.pushLocked(e)
				continue
			}
			delete(c.stalled, e.domain)
		}
		e.fired = true
		c.mu.Unlock()
		e.f()
		return true
	}
	c.mu.Unlock()
	return false
}

// RunFor runs every call due in the next d, then sets the time to now+d.
func (c *VirtualClock) RunFor(d time.Duration) {
	limit := c.Now().Add(d)
	for c.step(limit) {
	}
	c.mu.Lock()
	if limit.After(c.now) {
		c.now = limit
	}
	c.mu.Unlock()
}

// RunUntil runs calls until cond holds (checked every check of simulated
// time) or max has passed; it reports whether cond held.
func (c *VirtualClock) RunUntil(max, check time.Duration, cond func() bool) bool {
	end := c.Now().Add(max)
	for {
		if cond() {
			return true
		}
		now := c.Now()
		if !now.Before(end) {
			return false
		}
		c.RunFor(min(check, end.Sub(now)))
	}
}
