package gossip

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"
)

// The simulation harness: n nodes on a MemNetwork driven by a VirtualClock,
// all on the test goroutine. Nothing sleeps; a minute of cluster time takes
// milliseconds to a few seconds.

var testKey = []byte("0123456789abcdef0123456789abcdef")

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type sim struct {
	t     *testing.T
	clock *VirtualClock
	net   *MemNetwork
	seed  uint64
	cfg   func(i int, c *Config)
	nodes []*Gossip
	subs  []*Subscription
	// log holds every event each node saw, drained from the subscriptions.
	log [][]Event
	// sent records the size of every datagram sent, across the nodes.
	sent sizes
	// dialing makes every node's transport a ConnectedTransport with no
	// connection open: every exchange would dial.
	dialing bool
}

type sizes struct {
	packets, bytes, largest int
}

// sizeTransport records the datagrams a node sends.
type sizeTransport struct {
	Transport
	s *sizes
}

func (t sizeTransport) WritePacket(addr string, b []byte) error {
	t.s.packets++
	t.s.bytes += len(b)
	t.s.largest = max(t.s.largest, len(b))
	return t.Transport.WritePacket(addr, b)
}

// dialingTransport reports no connection open to anyone.
type dialingTransport struct{ Transport }

func (dialingTransport) Connected(string) bool { return false }

func simAddr(i int) string { return fmt.Sprintf("10.0.%d.%d:7911", i/250, i%250+1) }
func simID(i int) string   { return fmt.Sprintf("n%02d", i) }

// seedOffset shifts every simulation's seed: GOSSIP_SEED_OFFSET=k runs
// the same tests on other, equally deterministic, histories.
var seedOffset, _ = strconv.ParseUint(os.Getenv("GOSSIP_SEED_OFFSET"), 10, 64)

// newSim builds a network for n nodes; start them with start.
func newSim(t *testing.T, n int, seed uint64, cfg func(i int, c *Config)) *sim {
	t.Helper()
	seed += seedOffset * 7919
	clock := NewVirtualClock(time.Unix(1_000_000_000, 0))
	s := &sim{t: t, clock: clock, net: NewMemNetwork(clock, seed), seed: seed, cfg: cfg,
		nodes: make([]*Gossip, n), subs: make([]*Subscription, n), log: make([][]Event, n)}
	t.Cleanup(func() {
		for _, g := range s.nodes {
			if g != nil {
				_ = g.Shutdown()
			}
		}
	})
	return s
}

// config is node i's configuration: seed node 0 (for i > 0), the network's
// clock, a seed derived from the simulation's.
func (s *sim) config(i int) Config {
	c := Config{
		NodeID:     simID(i),
		ClusterKey: testKey,
		Clock:      s.net.Clock(simAddr(i)),
		Seed:       s.seed*1000 + uint64(i) + 1,
		Logger:     quiet,
	}
	if i > 0 {
		c.Seeds = []string{simAddr(0)}
	}
	if s.cfg != nil {
		s.cfg(i, &c)
	}
	return c
}

// start starts node i (again, after a kill) and subscribes to its events.
func (s *sim) start(i int) *Gossip {
	s.t.Helper()
	var tr Transport = sizeTransport{s.net.Transport(simAddr(i)), &s.sent}
	if s.dialing {
		tr = dialingTransport{tr}
	}
	g, err := New(s.config(i), tr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.nodes[i] = g
	s.subs[i] = g.Subscribe(1 << 16)
	return g
}

func (s *sim) startAll() {
	for i := range s.nodes {
		s.start(i)
	}
}

// kill stops node i without leaving.
func (s *sim) kill(i int) {
	s.drain()
	_ = s.nodes[i].Shutdown()
	s.nodes[i] = nil
}

// drain moves the events waiting in the subscriptions to the log.
func (s *sim) drain() {
	for i, sub := range s.subs {
		if sub == nil {
			continue
		}
		for {
			select {
			case ev, ok := <-sub.C:
				if !ok {
					s.subs[i] = nil
					goto next
				}
				s.log[i] = append(s.log[i], ev)
			default:
				goto next
			}
		}
	next:
	}
}

// run advances the clock by d.
func (s *sim) run(d time.Duration) {
	s.clock.RunFor(d)
	s.drain()
}

// until runs until cond holds, checking every 100ms of simulated time, for
// at most max; it fails the test if cond never holds.
func (s *sim) until(max time.Duration, what string, cond func() bool) time.Duration {
	s.t.Helper()
	start := s.clock.Now()
	ok := s.clock.RunUntil(max, 100*time.Millisecond, func() bool { s.drain(); return cond() })
	if !ok {
		s.t.Fatalf("%s: not after %v of simulated time", what, max)
	}
	return s.clock.Now().Sub(start)
}

// converged reports whether every running node sees exactly the running
// nodes, all alive.
func (s *sim) converged() bool {
	want := 0
	for _, g := range s.nodes {
		if g != nil {
			want++
		}
	}
	for _, g := range s.nodes {
		if g == nil {
			continue
		}
		alive := 0
		for _, m := range g.Members() {
			if m.State == StateAlive {
				alive++
			}
		}
		if alive != want || g.NumAlive() != want {
			return false
		}
	}
	return true
}

// stateOf is how node i sees node j.
func (s *sim) stateOf(i, j int) State {
	m, ok := s.nodes[i].Member(simID(j))
	if !ok {
		return 0
	}
	return m.State
}

// events returns the events of a kind about member id, over all nodes.
func (s *sim) events(kind EventKind, id string) (n int, observers map[int]time.Time) {
	observers = map[int]time.Time{}
	for i, evs := range s.log {
		for _, ev := range evs {
			if ev.Kind == kind && ev.Member.ID == id {
				n++
				if _, ok := observers[i]; !ok {
					observers[i] = ev.Time
				}
			}
		}
	}
	return n, observers
}

// deadOrSuspect counts the Dead and Suspect events about members other
// than the excluded ones.
func (s *sim) falseEvents(kind EventKind, exclude ...string) (n int, who map[string]int) {
	who = map[string]int{}
	for _, evs := range s.log {
	next:
		for _, ev := range evs {
			if ev.Kind != kind {
				continue
			}
			for _, x := range exclude {
				if ev.Member.ID == x {
					continue next
				}
			}
			n++
			who[ev.Member.ID]++
		}
	}
	return n, who
}

// converge starts every node and waits for one view.
func (s *sim) converge(max time.Duration) time.Duration {
	s.t.Helper()
	s.startAll()
	return s.until(max, "convergence", s.converged)
}
