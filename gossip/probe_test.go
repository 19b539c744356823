package gossip

import (
	"sync"
	"testing"
	"time"
)

// handClock runs a timer only when the test fires it, in the order the
// test chooses: what the real clock may do when a stalled process wakes up
// with several timers overdue, each called on a goroutine of its own.
type handClock struct {
	mu  sync.Mutex
	now time.Time
}

type handTimer struct {
	c       *handClock
	due     time.Time
	f       func()
	stopped bool
	fired   bool
}

func (c *handClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *handClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &handTimer{c: c, due: c.now.Add(d), f: f}
}

func (t *handTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped && !t.fired
	t.stopped = true
	return was
}

// fire runs t now (the clock moves to its due time if that is later); it
// reports whether t was still pending.
func (t *handTimer) fire() bool {
	t.c.mu.Lock()
	if t.stopped || t.fired {
		t.c.mu.Unlock()
		return false
	}
	t.fired = true
	if t.due.After(t.c.now) {
		t.c.now = t.due
	}
	t.c.mu.Unlock()
	t.f()
	return true
}

// callTransport records the exchanges, drops the datagrams and delivers
// nothing.
type callTransport struct {
	mu    sync.Mutex
	calls []recordedCall
}

type recordedCall struct {
	addr    string
	timeout time.Duration
	done    func([]byte, error)
}

func (*callTransport) Start(Handler) error              { return nil }
func (*callTransport) Addr() string                     { return "10.0.0.1:7946" }
func (*callTransport) WritePacket(string, []byte) error { return nil }
func (*callTransport) Close() error                     { return nil }
func (c *callTransport) Call(addr string, _ []byte, timeout time.Duration, done func([]byte, error)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, recordedCall{addr, timeout, done})
	return nil
}

var handAddrs = map[string]string{"b": "10.0.0.2:7946", "c": "10.0.0.3:7946"}

// newHandNode starts node a on a handClock, knowing members b and c, and
// returns it with its first probe tick.
func newHandNode(t *testing.T) (*Gossip, *callTransport, *handTimer) {
	t.Helper()
	tr := &callTransport{}
	g, tick := newHandNodeOn(t, tr)
	return g, tr, tick
}

// newHandNodeOn is newHandNode on a transport of the test's choice.
func newHandNodeOn(t *testing.T, tr Transport) (*Gossip, *handTimer) {
	t.Helper()
	cfg := Config{NodeID: "a", ClusterKey: testKey, Clock: &handClock{now: time.Unix(1_000_000_000, 0)},
		Logger: quiet, Seed: 1, PushPullInterval: -1, ReconnectInterval: -1}
	g, err := New(cfg, tr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range []string{"b", "c"} {
		g.aliveLocked(alive{inc: 1, proto: protoVersion, id: []byte(id), addr: []byte(handAddrs[id])})
	}
	return g, g.timers[timerProbe].(*handTimer)
}

// When a probe's end runs before its timeout (both overdue after a stall,
// on goroutines of the real clock in no set order), the target has had
// only the direct ping: the indirect pings and the fallback go out then,
// with the rest of an interval, and the target is not suspected for this
// node's lateness.
func TestProbeEndBeforeTimeout(t *testing.T) {
	g, tr, tick := newHandNode(t)

	tick.fire()
	g.mu.Lock()
	pr := g.probe
	target := pr.target.id
	timeout, end := pr.timeout.(*handTimer), pr.end.(*handTimer)
	g.mu.Unlock()

	end.fire() // before the timeout
	st := g.Stats()
	if st.Suspected != 0 || st.IndirectProbes != 1 || st.FallbackProbes != 1 {
		t.Fatalf("after the end ran first: %d suspected, %d indirect, %d fallback probes; want 0, 1, 1",
			st.Suspected, st.IndirectProbes, st.FallbackProbes)
	}
	if m, _ := g.Member(target); m.State != StateAlive {
		t.Fatalf("%s is %v", target, m.State)
	}
	tr.mu.Lock()
	calls := tr.calls
	tr.mu.Unlock()
	rest := DefaultProbeInterval - DefaultProbeTimeout
	if len(calls) != 1 || calls[0].addr != handAddrs[target] || calls[0].timeout != rest {
		t.Fatalf("fallback calls %+v; want one to %s with %v", calls, target, rest)
	}
	if timeout.fire(); g.Stats().IndirectProbes != 1 {
		t.Fatal("the late timeout probed again")
	}

	// The fallback answers; the probe ends without a suspicion.
	g.mu.Lock()
	ack := g.keys.seal(nil, appendSeqBody(beginRequest(nil, msgAck), pr.seq), g.ad)
	end = pr.end.(*handTimer)
	g.mu.Unlock()
	calls[0].done(ack, nil)
	if !end.fire() {
		t.Fatal("the probe's new end was stopped")
	}
	st = g.Stats()
	if st.Suspected != 0 || st.FallbackAcks != 1 {
		t.Fatalf("%d suspected, %d fallback acks; want 0, 1", st.Suspected, st.FallbackAcks)
	}
	g.mu.Lock()
	moved := g.probe != pr
	g.mu.Unlock()
	if !moved {
		t.Fatal("the probe did not end")
	}
}

// Control: a probe whose timeout and end run in order and that nothing
// answers suspects its target.
func TestProbeUnansweredSuspects(t *testing.T) {
	g, tr, tick := newHandNode(t)

	tick.fire()
	g.mu.Lock()
	target := g.probe.target.id
	timeout, end := g.probe.timeout.(*handTimer), g.probe.end.(*handTimer)
	g.mu.Unlock()
	timeout.fire()
	end.fire()
	if st := g.Stats(); st.Suspected != 1 || st.FallbackProbes != 1 {
		t.Fatalf("%d suspected, %d fallback probes; want 1, 1", st.Suspected, st.FallbackProbes)
	}
	if len(tr.calls) != 1 {
		t.Fatalf("%d fallback calls; want 1", len(tr.calls))
	}
	if m, _ := g.Member(target); m.State != StateSuspect {
		t.Fatalf("%s is %v", target, m.State)
	}
}

// connCallTransport is a callTransport that says whether it has a
// connection open to every member (a ConnectedTransport).
type connCallTransport struct {
	*callTransport
	connected bool
}

func (c connCallTransport) Connected(string) bool { return c.connected }

// A fallback probe that would dial is held back a fifth of the rest of the
// interval and sent only if no ack came; over an open connection it goes
// at once (PROTOCOL.md §5.1).
func TestFallbackHeldBackWithoutConnection(t *testing.T) {
	rest := DefaultProbeInterval - DefaultProbeTimeout
	for _, tc := range []struct {
		name      string
		connected bool
		ack       bool // an indirect ack comes during the grace
	}{
		{"connected", true, false},
		{"dial, no ack", false, false},
		{"dial, acked meanwhile", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := connCallTransport{&callTransport{}, tc.connected}
			g, tick := newHandNodeOn(t, tr)
			tick.fire()
			g.mu.Lock()
			pr := g.probe
			timeout, end := pr.timeout.(*handTimer), pr.end.(*handTimer)
			g.mu.Unlock()
			timeout.fire()
			calls := func() []recordedCall {
				tr.mu.Lock()
				defer tr.mu.Unlock()
				return append([]recordedCall(nil), tr.calls...)
			}
			if tc.connected {
				if c := calls(); len(c) != 1 || c[0].timeout != rest {
					t.Fatalf("connected: calls %+v; want one at once with %v", c, rest)
				}
				g.mu.Lock()
				held := pr.fallback
				g.mu.Unlock()
				if held != nil {
					t.Fatal("connected: a fallback was held back")
				}
				return
			}
			if c := calls(); len(c) != 0 {
				t.Fatalf("a fallback that would dial went at once: %+v", c)
			}
			g.mu.Lock()
			grace := pr.fallback.(*handTimer)
			if tc.ack {
				g.ackLocked(pr.seq)
			}
			g.mu.Unlock()
			if want := g.cfg.ProbeTimeout + rest/fallbackGraceDiv; grace.due.Sub(tick.due) != want {
				t.Fatalf("held back until %v after the tick; want %v", grace.due.Sub(tick.due), want)
			}
			grace.fire()
			st := g.Stats()
			if tc.ack {
				if c := calls(); len(c) != 0 || st.FallbackProbes != 0 || st.FallbackSkipped != 1 {
					t.Fatalf("acked: calls %+v, %d fallback probes, %d skipped; want none, 0, 1", c, st.FallbackProbes, st.FallbackSkipped)
				}
			} else {
				left := rest - rest/fallbackGraceDiv
				if c := calls(); len(c) != 1 || c[0].timeout != left || st.FallbackProbes != 1 || st.FallbackSkipped != 0 {
					t.Fatalf("unacked: calls %+v, %d fallback probes, %d skipped; want one with %v, 1, 0", c, st.FallbackProbes, st.FallbackSkipped, left)
				}
			}
			end.fire()
			if got := g.Stats().Suspected; got != map[bool]int64{true: 0, false: 1}[tc.ack] {
				t.Fatalf("%d suspected", got)
			}
		})
	}
}
