package gossip

import (
	"errors"
	"testing"
	"time"
)

// Cluster behaviour over the in-memory transport ("Done when", first
// bullet). Every test is deterministic: one seed, one goroutine.

func TestSimConverge64(t *testing.T) {
	s := newSim(t, 64, 1, nil)
	s.net.SetLoss(0.05)
	took := s.converge(30 * time.Second)
	t.Logf("64 nodes converged in %v of simulated time", took)
	if n, who := s.falseEvents(EventDead); n != 0 {
		t.Fatalf("dead events while joining: %v", who)
	}
	// Joins fill packets with many alive messages: never past the limit.
	if s.sent.largest > DefaultMaxPacketSize || s.sent.largest < DefaultMaxPacketSize-100 {
		t.Fatalf("largest datagram %d bytes (limit %d)", s.sent.largest, DefaultMaxPacketSize)
	}
	t.Logf("%d datagrams, %d bytes on average, the largest %d", s.sent.packets, s.sent.bytes/s.sent.packets, s.sent.largest)
}

// The Lifeguard health score: a node whose probes all fail because its own
// network is cut (no acks, and no nacks from its helpers either) raises its
// score and probes less often; healed, it recovers.
func TestSimLocalHealth(t *testing.T) {
	const n = 8
	s := newSim(t, n, 13, func(_ int, c *Config) { c.DisableRPCFallback = true })
	s.converge(10 * time.Second)
	g := s.nodes[2]
	for i := 0; i < n; i++ {
		s.net.SetLinkLoss(simAddr(2), simAddr(i), 1)
	}
	before := g.Stats().Probes
	s.run(30 * time.Second)
	probes := g.Stats().Probes - before
	score := g.Health()
	if score < DefaultAwarenessMaxMultiplier/2 {
		t.Fatalf("health score %d after 30 s cut off", score)
	}
	if probes > 15 {
		t.Fatalf("%d probes in 30 s: not slowed down", probes)
	}
	for i, h := range s.nodes {
		// A healthy node may owe a point to the cut node, picked as a
		// helper before it was suspected (it sent no nack).
		if i != 2 && h.Health() > 1 {
			t.Fatalf("healthy node %d has score %d", i, h.Health())
		}
	}
	for i := 0; i < n; i++ {
		s.net.SetLinkLoss(simAddr(2), simAddr(i), 0)
	}
	s.until(2*time.Minute, "recovery", func() bool { return g.Health() == 0 && s.converged() })
	t.Logf("cut off: score %d, %d probes in 30 s", score, probes)
}

func TestSimKilledNodeDetected(t *testing.T) {
	const n = 64
	s := newSim(t, n, 2, nil)
	s.net.SetLoss(0.05)
	s.converge(30 * time.Second)
	s.run(5 * time.Second)

	victim := n - 1
	killed := s.clock.Now()
	s.kill(victim)
	// The bound, in protocol periods (1 s): the first probe of the victim
	// comes within a few periods (64 probers, one probe each per period);
	// k=2 independent confirmations follow within a few more, bringing the
	// suspicion timeout to its minimum, 4*log10(64) = 7.2 periods; then
	// the dead message spreads in O(log n) gossip rounds. 20 periods is
	// generous; the measured value is logged.
	bound := 20 * DefaultProbeInterval
	took := s.until(bound, "every node sees the victim dead", func() bool {
		for i, g := range s.nodes {
			if g != nil && s.stateOf(i, victim) != StateDead {
				return false
			}
		}
		return true
	})
	_, obs := s.events(EventDead, simID(victim))
	var first, last time.Duration = bound, 0
	for _, at := range obs {
		d := at.Sub(killed)
		first, last = min(first, d), max(last, d)
	}
	t.Logf("killed node: first saw it dead after %v, last after %v (all within %v)", first, last, took)
	if n, who := s.falseEvents(EventDead, simID(victim)); n != 0 {
		t.Fatalf("healthy nodes declared dead: %v", who)
	}
}

// A node stalled for 3 probe timeouts (1.5 s with the LAN timers) under 5%
// loss is suspected, refutes when it wakes, and is declared dead by no
// one. (Its own probe in flight fails when it wakes, so it falsely
// suspects a healthy member too, which refutes.)
func TestSimStallLifeguard(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		s := newSim(t, 32, seed, nil)
		s.net.SetLoss(0.05)
		s.converge(30 * time.Second)
		s.run(3 * time.Second)
		s.net.Stall(simAddr(5), 3*DefaultProbeTimeout)
		s.run(60 * time.Second)
		if n, who := s.falseEvents(EventDead); n != 0 {
			t.Fatalf("seed %d: declared dead: %v", seed, who)
		}
		if !s.converged() {
			t.Fatalf("seed %d: not one view after the stall", seed)
		}
	}
}

// stallPressureConfig is tuned for fast detection, where a pause hurts: a
// probe timeout close to the interval (so the stall, 3 probe timeouts, is
// 2.7 periods) and a minimum suspicion timeout of 1.2 periods (SuspicionMult
// 1 on 16 nodes). Lifeguard's suspicions start 6 times longer and need 6
// independent confirmations to come down to that minimum.
func stallPressureConfig(lifeguard bool) func(int, *Config) {
	return func(_ int, c *Config) {
		c.ProbeTimeout = 900 * time.Millisecond
		c.SuspicionMult = 1
		c.SuspicionConfirmations = 6
		c.DisableLifeguard = !lifeguard
	}
}

// TestSimStallWithoutLifeguard shows why Lifeguard matters: under that
// pressure, plain SWIM declares the paused node dead in about half the
// runs (it cannot refute before a short, fixed suspicion timeout expires
// somewhere), Lifeguard in about 1 run in 100: only when 7 or more of the
// 15 other nodes happen to probe it during its pause, which brings the
// timeout down to the minimum as designed (measured over seeds 100-199: 0
// of 100 with Lifeguard, 54 without). Statistical over 16 seeds, with wide
// margins; deterministic for each.
func TestSimStallWithoutLifeguard(t *testing.T) {
	const runs = 16
	var dead [2]int
	for i, lifeguard := range []bool{true, false} {
		for seed := uint64(1); seed <= runs; seed++ {
			s := newSim(t, 16, seed, stallPressureConfig(lifeguard))
			s.net.SetLoss(0.05)
			s.converge(30 * time.Second)
			s.run(3 * time.Second)
			s.net.Stall(simAddr(5), 3*900*time.Millisecond)
			s.run(12 * time.Second)
			if n, _ := s.falseEvents(EventDead); n > 0 {
				dead[i]++
			}
			for j, g := range s.nodes {
				_ = g.Shutdown()
				s.nodes[j] = nil
			}
		}
	}
	t.Logf("a node paused for 3 probe timeouts was declared dead in %d of %d runs with Lifeguard, %d without", dead[0], runs, dead[1])
	if dead[0] > 2 || dead[1] < 5 {
		t.Fatalf("with Lifeguard %d false deaths in %d runs (want at most 2); without, %d (want at least 5)", dead[0], runs, dead[1])
	}
}

// With every datagram between a prober and its target lost (and the RPC
// fallback off), indirect probes through other members keep the target
// alive: the prober never suspects it.
func TestSimIndirectProbes(t *testing.T) {
	const n = 8
	s := newSim(t, n, 4, func(_ int, c *Config) { c.DisableRPCFallback = true })
	s.net.SetLoss(0.01)
	s.converge(10 * time.Second)
	s.net.SetLinkLoss(simAddr(0), simAddr(3), 1)
	s.run(3 * time.Minute)
	if k, _ := s.events(EventSuspect, simID(3)); k != 0 {
		t.Fatal("the target was suspected although indirect paths work")
	}
	if k, _ := s.events(EventSuspect, simID(0)); k != 0 {
		t.Fatal("the prober was suspected (by the target) although indirect paths work")
	}
	if k, who := s.falseEvents(EventDead); k != 0 {
		t.Fatalf("dead: %v", who)
	}
	if st := s.nodes[0].Stats(); st.IndirectProbes < 10 || st.Suspected != 0 {
		t.Fatalf("node 0: %d probes needed indirect pings, %d suspicions", st.IndirectProbes, st.Suspected)
	}

	// Control: with indirect probes unable to help (every path to node 3
	// cut), node 3 is suspected.
	for i := 0; i < n; i++ {
		s.net.SetLinkLoss(simAddr(i), simAddr(3), 1)
	}
	s.run(20 * time.Second)
	if k, _ := s.events(EventSuspect, simID(3)); k == 0 {
		t.Fatal("control: a fully cut node was never suspected")
	}
}

// With every datagram to and from a node lost, the fallback probe over RPC
// keeps it alive: sent at once over open connections, or held back a
// grace when every exchange would dial.
func TestSimFallbackProbe(t *testing.T) {
	for _, dialing := range []bool{false, true} {
		t.Run(map[bool]string{false: "connected", true: "dialing"}[dialing], func(t *testing.T) {
			const n = 6
			s := newSim(t, n, 5, nil)
			s.dialing = dialing
			s.converge(10 * time.Second)
			for i := 0; i < n; i++ {
				if i != 2 {
					s.net.SetLinkLoss(simAddr(i), simAddr(2), 1)
				}
			}
			s.run(time.Minute)
			if k, who := s.falseEvents(EventSuspect); k != 0 {
				t.Fatalf("suspicions although RPC works: %v", who)
			}
		})
	}
}

// The fallback probe goes with the indirect pings and has the rest of the
// interval (PROTOCOL.md §5.1), 500 ms here, or four fifths of it when it
// would dial: an RPC round trip longer than half of that (200-280 ms, as a
// first fallback that dials and completes a TLS handshake can take) still
// reaches the member in time.
func TestSimFallbackProbeSlowRPC(t *testing.T) {
	for _, dialing := range []bool{false, true} {
		t.Run(map[bool]string{false: "connected", true: "dialing"}[dialing], func(t *testing.T) {
			const n = 6
			s := newSim(t, n, 7, nil)
			s.dialing = dialing
			s.net.SetDelay(100*time.Millisecond, 140*time.Millisecond)
			s.converge(20 * time.Second)
			for i := 0; i < n; i++ {
				if i != 2 {
					s.net.SetLinkLoss(simAddr(i), simAddr(2), 1)
				}
			}
			s.run(time.Minute)
			if k, who := s.falseEvents(EventSuspect); k != 0 {
				t.Fatalf("suspicions although RPC works: %v", who)
			}
			if got := s.nodes[0].Stats().FallbackAcks; got == 0 {
				t.Fatal("control: no probe was answered by the fallback alone")
			}
		})
	}
}

// Under random loss, a fallback that would dial is almost never needed:
// the indirect acks answer during its grace.
func TestSimFallbackHeldBackUnderLoss(t *testing.T) {
	const n = 16
	s := newSim(t, n, 11, nil)
	s.dialing = true
	s.net.SetLoss(0.05)
	s.converge(30 * time.Second)
	s.run(2 * time.Minute)
	var indirect, sent, skipped int64
	for _, g := range s.nodes {
		st := g.Stats()
		indirect += st.IndirectProbes
		sent += st.FallbackProbes
		skipped += st.FallbackSkipped
	}
	if indirect < 50 || skipped < indirect*8/10 || sent > indirect/10 {
		t.Fatalf("%d indirect probes, %d fallbacks sent, %d held back and skipped; want most skipped", indirect, sent, skipped)
	}
	if k, who := s.falseEvents(EventSuspect); k != 0 {
		t.Fatalf("suspicions: %v", who)
	}
	t.Logf("%d indirect probes, %d fallbacks sent, %d skipped", indirect, sent, skipped)
}

func TestSimPartitionHeals(t *testing.T) {
	const n = 16
	s := newSim(t, n, 6, nil)
	s.net.SetLoss(0.02)
	s.converge(20 * time.Second)
	var left, right []string
	for i := 0; i < n; i++ {
		if i < n/2 {
			left = append(left, simAddr(i))
		} else {
			right = append(right, simAddr(i))
		}
	}
	s.net.Partition(left, right)
	// Longer than the longest suspicion timeout (6 * 4 * log10(16) s).
	s.run(40 * time.Second)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if want := (i < n/2) == (j < n/2); (s.stateOf(i, j) == StateAlive) != want {
				t.Fatalf("during the partition node %d sees node %d %v", i, j, s.stateOf(i, j))
			}
		}
	}
	s.net.Heal()
	took := s.until(3*time.Minute, "one view after the partition healed", s.converged)
	t.Logf("healed partition converged in %v of simulated time", took)
}

// Rotating the key of a running cluster, each step done on every node one
// after the other, causes no suspicion at all, and not one packet fails to
// decrypt.
func TestSimKeyRotation(t *testing.T) {
	const n = 16
	s := newSim(t, n, 7, nil)
	s.converge(10 * time.Second)
	s.run(5 * time.Second)
	newKey := []byte("fedcba9876543210fedcba9876543210")
	steps := []func(k *Keyring) error{
		func(k *Keyring) error { return k.AddKey(newKey) },
		func(k *Keyring) error { return k.UseKey(newKey) },
		func(k *Keyring) error { return k.RemoveKey(testKey) },
	}
	for _, step := range steps {
		for _, g := range s.nodes {
			if err := step(g.Keyring()); err != nil {
				t.Fatal(err)
			}
			s.run(150 * time.Millisecond)
		}
		s.run(5 * time.Second)
	}
	s.run(20 * time.Second)
	if k, who := s.falseEvents(EventSuspect); k != 0 {
		t.Fatalf("suspicions during key rotation: %v", who)
	}
	for i, g := range s.nodes {
		if st := g.Stats(); st.DecryptFailures != 0 {
			t.Fatalf("node %d: %d packets failed to decrypt", i, st.DecryptFailures)
		}
		if g.Keyring().Len() != 1 {
			t.Fatalf("node %d has %d keys", i, g.Keyring().Len())
		}
	}

	// Control: a node that switches to a key nobody else has is suspected.
	if err := s.nodes[3].Keyring().AddKey(testKey); err != nil {
		t.Fatal(err)
	}
	if err := s.nodes[3].Keyring().UseKey(testKey); err != nil {
		t.Fatal(err)
	}
	s.run(20 * time.Second)
	if k, _ := s.events(EventSuspect, simID(3)); k == 0 {
		t.Fatal("control: a node with a foreign primary key was never suspected")
	}
}

// A falsely suspected node clears itself: it refutes with a higher
// incarnation and every node sees it alive again, without a restart.
func TestSimRefute(t *testing.T) {
	const n = 8
	s := newSim(t, n, 8, nil)
	s.converge(10 * time.Second)
	before, _ := s.nodes[0].Member(simID(4))
	s.nodes[0].mu.Lock()
	s.nodes[0].suspectLocked(before.Incarnation, []byte(simID(4)), []byte(simID(0)), true)
	s.nodes[0].mu.Unlock()
	s.until(10*time.Second, "refutation reaches the accuser", func() bool {
		m, _ := s.nodes[0].Member(simID(4))
		return m.State == StateAlive && m.Incarnation > before.Incarnation
	})
	// Everyone else has it alive all along, and the new incarnation at the
	// latest after a push-pull round (anti-entropy).
	s.until(2*DefaultPushPullInterval, "the new incarnation everywhere", func() bool {
		for i, g := range s.nodes {
			m, _ := g.Member(simID(4))
			if i != 4 && (m.State != StateAlive || m.Incarnation <= before.Incarnation) {
				return false
			}
		}
		return true
	})
	if k, _ := s.events(EventDead, simID(4)); k != 0 {
		t.Fatal("refuted node declared dead")
	}
	if _, obs := s.events(EventAlive, simID(4)); len(obs) == 0 {
		t.Fatal("no alive event after the refutation")
	}
}

// A graceful leave is recorded as Left everywhere, never Dead.
func TestSimLeave(t *testing.T) {
	const n = 8
	s := newSim(t, n, 9, nil)
	s.net.SetLoss(0.05)
	s.converge(10 * time.Second)
	if err := s.nodes[6].Leave(); err != nil {
		t.Fatal(err)
	}
	s.nodes[6] = nil
	s.until(10*time.Second, "every node sees the leave", func() bool {
		for i, g := range s.nodes {
			if g != nil && s.stateOf(i, 6) != StateLeft {
				return false
			}
		}
		return true
	})
	s.run(time.Minute)
	if k, _ := s.events(EventDead, simID(6)); k != 0 {
		t.Fatal("a node that left was declared dead")
	}
	if _, obs := s.events(EventLeft, simID(6)); len(obs) != n-1 {
		t.Fatalf("left events on %d nodes", len(obs))
	}
}

// Metadata updates are versioned by the incarnation: the newest wins
// everywhere, and each node reports it once as an update.
func TestSimMetaUpdate(t *testing.T) {
	const n = 8
	s := newSim(t, n, 10, func(i int, c *Config) { c.Meta = []byte("role=worker") })
	s.net.SetLoss(0.05)
	s.converge(10 * time.Second)
	if err := s.nodes[2].UpdateMeta([]byte("role=leader raft=10.0.0.3:7912")); err != nil {
		t.Fatal(err)
	}
	if err := s.nodes[2].UpdateMeta([]byte("role=leader raft=10.0.0.3:7913")); err != nil {
		t.Fatal(err)
	}
	// Gossip usually carries it in a second; push-pull guarantees it.
	s.until(2*DefaultPushPullInterval, "meta everywhere", func() bool {
		for _, g := range s.nodes {
			if m, _ := g.Member(simID(2)); string(m.Meta) != "role=leader raft=10.0.0.3:7913" {
				return false
			}
		}
		return true
	})
	if _, obs := s.events(EventUpdate, simID(2)); len(obs) != n-1 {
		t.Fatalf("update events on %d nodes", len(obs))
	}
	if err := s.nodes[2].UpdateMeta(make([]byte, MaxMetaLen+1)); !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("oversize meta: %v", err)
	}
}

// User broadcasts reach every other node once (best effort, like
// memberlist's: without loss all of them, with 5% loss nearly all, never
// twice); a payload that cannot fit a packet is refused when it is queued.
func TestSimBroadcast(t *testing.T) {
	for _, loss := range []float64{0, 0.05} {
		const n = 16
		s := newSim(t, n, 11, nil)
		s.net.SetLoss(loss)
		s.converge(10 * time.Second)
		g := s.nodes[1]
		if err := g.Broadcast(make([]byte, g.MaxBroadcastSize()+1)); !errors.Is(err, ErrPayloadTooLarge) {
			t.Fatalf("oversize broadcast: %v", err)
		}
		for k := 0; k < 20; k++ {
			if err := g.Broadcast([]byte{byte(k)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := g.Broadcast(make([]byte, g.MaxBroadcastSize())); err != nil {
			t.Fatalf("largest broadcast: %v", err)
		}
		s.run(10 * time.Second)
		delivered := 0
		for i, evs := range s.log {
			got := map[int]int{}
			for _, ev := range evs {
				if ev.Kind == EventUser {
					got[len(ev.Payload)*1000+int(ev.Payload[0])]++
				}
			}
			if i == 1 && len(got) != 0 {
				t.Fatal("the origin delivered its own broadcasts")
			}
			for k, c := range got {
				if c != 1 {
					t.Fatalf("node %d got broadcast %d %d times", i, k, c)
				}
			}
			delivered += len(got)
		}
		want := 21 * (n - 1)
		t.Logf("loss %v: %d of %d deliveries", loss, delivered, want)
		if (loss == 0 && delivered != want) || delivered < want*97/100 {
			t.Fatalf("loss %v: %d of %d deliveries", loss, delivered, want)
		}
	}
}

// A node with a data directory restarts and rejoins without seeds, with
// the same ID.
func TestSimRestartFromDataDir(t *testing.T) {
	const n = 6
	dir := t.TempDir()
	restart := false
	s := newSim(t, n, 12, func(i int, c *Config) {
		if i == 5 {
			c.NodeID = "" // generated, then kept in the data directory
			c.DataDir = dir
			if restart {
				c.Seeds = nil
			}
		}
	})
	s.converge(10 * time.Second)
	s.run(31 * time.Second) // one push-pull round saves the member list
	id := s.nodes[5].ID()
	s.kill(5)
	s.until(time.Minute, "the node is seen dead", func() bool {
		m, _ := s.nodes[0].Member(id)
		return m.State == StateDead
	})
	restart = true
	restarted := s.start(5)
	if restarted.ID() != id {
		t.Fatalf("restarted with ID %q, was %q", restarted.ID(), id)
	}
	if len(restarted.cfg.Seeds) != 0 {
		t.Fatal("seeds configured")
	}
	s.until(20*time.Second, "rejoined", s.converged)
}
