package gossip

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/internal/certgen"
	"github.com/hawser-rpc/hawser/pool"
	"github.com/hawser-rpc/hawser/server"
)

// Gossip over real UDP on loopback, with the RPC server and pool each node
// runs ("Done when", second bullet). These tests poll with deadlines on
// the wall clock; the timers are shortened so that they take seconds.

var rpcKey = []byte("the-rpc-cluster-key-0123456789ab")

var testCert = sync.OnceValue(func() *certgen.Pair {
	p, err := certgen.SelfSigned("localhost", "127.0.0.1")
	if err != nil {
		panic(err)
	}
	return p
})

// fastConfig shortens the timers tenfold or so.
// fastConfig is a node's configuration with the intervals shortened for
// tests. JoinRetryInterval too: at its default (5 s), equal to the tests'
// bound for a cluster to converge, a first join attempt that failed (a
// handshake past rpc-timeout while make test loads the machine) failed the
// test ("3 nodes converge: not within 5s").
func fastConfig(id string) Config {
	return Config{
		NodeID:            id,
		ClusterKey:        testKey,
		ProbeInterval:     200 * time.Millisecond,
		ProbeTimeout:      100 * time.Millisecond,
		GossipInterval:    50 * time.Millisecond,
		PushPullInterval:  2 * time.Second,
		JoinRetryInterval: 250 * time.Millisecond,
		Logger:            quiet,
	}
}

type udpNode struct {
	srv  *server.Server
	pool *pool.Pool
	g    *Gossip
	hook *PoolHook
	done chan error

	mu     sync.Mutex
	states []poolChange // the pool's state changes
}

type poolChange struct {
	addr string
	to   pool.State
	at   time.Time
}

// startUDPNode starts a server (on port, or a free one if 0), a pool, a
// UDP transport on the server's address and a gossip node with cfg.
func startUDPNode(t *testing.T, cfg Config, port int, wrap func(Transport) Transport) *udpNode {
	t.Helper()
	n := &udpNode{done: make(chan error, 1)}
	if port == 0 {
		port = -1
	}
	srv, err := server.New(server.Config{BindAddr: "127.0.0.1", Port: port, Certificate: &testCert().Cert, ClusterKey: rpcKey, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(pool.Config{
		Conn:       conn.Config{TLS: conn.ClientTLS("", nil), ClusterKey: rpcKey},
		RetriesMax: 2, BackoffBase: 20 * time.Millisecond,
		Logger: quiet,
		OnStateChange: func(addr string, _, to pool.State) {
			n.mu.Lock()
			n.states = append(n.states, poolChange{addr, to, time.Now()})
			n.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	utr, err := NewUDPTransport(UDPConfig{Server: srv, Pool: p})
	if err != nil {
		t.Fatal(err)
	}
	go func() { n.done <- srv.Serve(context.Background()) }()
	select {
	case <-srv.Ready():
	case err := <-n.done:
		t.Fatal(err)
	}
	var tr Transport = utr
	if wrap != nil {
		tr = wrap(utr)
	}
	g, err := New(cfg, tr)
	if err != nil {
		t.Fatal(err)
	}
	n.srv, n.pool, n.g = srv, p, g
	n.hook = NewPoolHook(g, p)
	t.Cleanup(n.stop)
	return n
}

// stop shuts the node down (idempotent).
func (n *udpNode) stop() {
	n.hook.Close()
	_ = n.g.Shutdown()
	_ = n.pool.Close()
	_ = n.srv.Close()
	<-n.done
	n.done <- nil // for the next stop
}

func (n *udpNode) port() int { return n.srv.Addr().(*net.TCPAddr).Port }

// eventually polls cond every 10ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func allSee(nodes []*udpNode, want int) bool {
	for _, n := range nodes {
		if n != nil && n.g.NumAlive() != want {
			return false
		}
	}
	return true
}

func TestUDPClusterEncrypted(t *testing.T) {
	var nodes []*udpNode
	for i := 0; i < 5; i++ {
		cfg := fastConfig("u" + strconv.Itoa(i))
		if i > 0 {
			cfg.Seeds = []string{nodes[0].g.Addr()}
		}
		nodes = append(nodes, startUDPNode(t, cfg, 0, nil))
	}
	for _, n := range nodes {
		if got, want := n.g.Addr(), n.srv.Addr().String(); got != want {
			t.Fatalf("gossip on %s, RPC on %s: not the same address and port", got, want)
		}
	}
	eventually(t, 5*time.Second, "5 nodes converge", func() bool { return allSee(nodes, 5) })
	time.Sleep(time.Second) // some probes and gossip rounds
	for i, n := range nodes {
		st := n.g.Stats()
		if st.DecryptFailures != 0 || st.Malformed != 0 || st.PacketsReceived == 0 || st.ExchangesReceived+st.ExchangesSent == 0 {
			t.Fatalf("node %d: %+v", i, st)
		}
	}
	// A killed node is found dead by the others.
	nodes[4].stop()
	eventually(t, 10*time.Second, "the killed node is seen dead", func() bool {
		for _, n := range nodes[:4] {
			if m, _ := n.g.Member("u4"); m.State != StateDead {
				return false
			}
		}
		return true
	})
}

func TestUDPForeignNodesNeverJoin(t *testing.T) {
	var nodes []*udpNode
	for i := 0; i < 3; i++ {
		cfg := fastConfig("c" + strconv.Itoa(i))
		if i > 0 {
			cfg.Seeds = []string{nodes[0].g.Addr()}
		}
		nodes = append(nodes, startUDPNode(t, cfg, 0, nil))
	}
	eventually(t, 5*time.Second, "3 nodes converge", func() bool { return allSee(nodes, 3) })
	seed := nodes[0].g.Addr()

	wrongKey := fastConfig("wrong-key")
	wrongKey.ClusterKey = []byte("another-key-entirely-0123456789")
	wrongName := fastConfig("wrong-name")
	wrongName.ClusterName = "other-cluster"
	for _, cfg := range []Config{wrongKey, wrongName} {
		cfg.Seeds = []string{seed}
		x := startUDPNode(t, cfg, 0, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := x.g.Join(ctx, seed)
		cancel()
		if !errors.Is(err, ErrJoin) {
			t.Fatalf("%s: join: %v", cfg.NodeID, err)
		}
		// Make it talk over UDP too: it believes it knows the seed.
		x.g.mu.Lock()
		x.g.aliveLocked(alive{inc: 1, proto: protoVersion, id: []byte("c0"), addr: []byte(seed)})
		x.g.mu.Unlock()
	}
	before := nodes[0].g.Stats().DecryptFailures
	time.Sleep(1500 * time.Millisecond)
	for _, n := range nodes {
		if n.g.NumAlive() != 3 || len(n.g.Members()) != 3 {
			t.Fatalf("%s sees %v", n.g.ID(), n.g.Members())
		}
	}
	if nodes[0].g.Stats().DecryptFailures == before {
		t.Fatal("the foreign nodes' datagrams were not dropped as undecryptable")
	}
}

// captureTransport records every datagram a node writes to its socket.
type captureTransport struct {
	Transport
	mu      sync.Mutex
	packets [][]byte
}

func (c *captureTransport) WritePacket(addr string, b []byte) error {
	c.mu.Lock()
	c.packets = append(c.packets, bytes.Clone(b))
	c.mu.Unlock()
	return c.Transport.WritePacket(addr, b)
}

func TestUDPPacketsUnreadable(t *testing.T) {
	capture := &captureTransport{}
	cfg := fastConfig("secret-node-id")
	cfg.Meta = []byte("role=vault-leader")
	a := startUDPNode(t, cfg, 0, func(tr Transport) Transport { capture.Transport = tr; return capture })
	cfg = fastConfig("other-node")
	cfg.Seeds = []string{a.g.Addr()}
	b := startUDPNode(t, cfg, 0, nil)
	eventually(t, 5*time.Second, "2 nodes converge", func() bool { return allSee([]*udpNode{a, b}, 2) })
	if err := a.g.Broadcast([]byte("the plaintext payload")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)

	capture.mu.Lock()
	packets := capture.packets
	capture.mu.Unlock()
	if len(packets) < 5 {
		t.Fatalf("only %d packets captured", len(packets))
	}
	wrong, _ := NewKeyring([]byte("not-the-cluster-key-0123456789ab"))
	secrets := [][]byte{[]byte("secret-node-id"), []byte("other-node"), []byte("role=vault-leader"),
		[]byte("the plaintext payload"), []byte(DefaultClusterName), []byte("127.0.0.1")}
	opened := 0
	for _, p := range packets {
		for _, s := range secrets {
			if bytes.Contains(p, s) {
				t.Fatalf("packet carries %q in clear: %x", s, p)
			}
		}
		if len(p) > DefaultMaxPacketSize || p[0] != envelopeV1 {
			t.Fatalf("bad envelope: %x", p)
		}
		if _, _, err := wrong.open(nil, p, sealAD(DefaultClusterName)); err == nil {
			t.Fatal("a packet opens with the wrong key")
		}
		if _, _, err := a.g.keys.open(nil, p, sealAD("other-cluster")); err == nil {
			t.Fatal("a packet opens with the wrong cluster name")
		}
		if plain, _, err := a.g.keys.open(nil, p, a.g.ad); err == nil && bytes.Contains(plain, []byte("secret-node-id")) {
			opened++
		}
	}
	if opened == 0 {
		t.Fatal("no captured packet opens with the right key")
	}
	// Nonces never repeat.
	seen := map[string]bool{}
	for _, p := range packets {
		n := string(p[1 : 1+nonceSize])
		if seen[n] {
			t.Fatal("nonce reused")
		}
		seen[n] = true
	}
}

// A peer parked in the pool (gossip found it dead) is dialed as soon as
// gossip sees it alive again, within one gossip round.
func TestUDPPoolHookWakesParkedPeer(t *testing.T) {
	var nodes []*udpNode
	for i := 0; i < 3; i++ {
		cfg := fastConfig("p" + strconv.Itoa(i))
		cfg.GossipInterval = 200 * time.Millisecond
		if i > 0 {
			cfg.Seeds = []string{nodes[0].g.Addr()}
		}
		nodes = append(nodes, startUDPNode(t, cfg, 0, nil))
	}
	a := nodes[0]
	eventually(t, 5*time.Second, "3 nodes converge", func() bool { return allSee(nodes, 3) })
	cAddr, cPort := nodes[2].g.Addr(), nodes[2].port()
	nodes[2].stop()
	eventually(t, 10*time.Second, "c is dead to a, and parked in a's pool", func() bool {
		m, _ := a.g.Member("p2")
		return m.State == StateDead && a.pool.Peers()[cAddr] == pool.Parked
	})
	sub := a.g.Subscribe(0)
	defer sub.Close()

	cfg := fastConfig("p2")
	cfg.GossipInterval = 200 * time.Millisecond
	cfg.Seeds = []string{a.g.Addr()}
	restarted := time.Now()
	nodes[2] = startUDPNode(t, cfg, cPort, nil)

	var seen time.Time
	deadline := time.After(10 * time.Second)
	for seen.IsZero() {
		select {
		case ev := <-sub.C:
			if ev.Member.ID == "p2" && (ev.Kind == EventJoin || ev.Kind == EventAlive) {
				seen = ev.Time
			}
		case <-deadline:
			t.Fatal("a never saw c alive again")
		}
	}
	eventually(t, 5*time.Second, "c is up in a's pool", func() bool { return a.pool.Peers()[cAddr] == pool.Up })
	a.mu.Lock()
	defer a.mu.Unlock()
	// The first dial after the restart: no later than one gossip round
	// after gossip saw the peer alive (it may come earlier: an exchange
	// with the peer also wakes it).
	for _, ch := range a.states {
		if ch.addr == cAddr && ch.to == pool.Connecting && !ch.at.Before(restarted) {
			if d := ch.at.Sub(seen); d > cfg.GossipInterval {
				t.Fatalf("dialed %v after gossip saw the peer alive; want within one gossip round (%v)", d, cfg.GossipInterval)
			}
			t.Logf("dialed %v after gossip saw the peer alive", ch.at.Sub(seen))
			return
		}
	}
	t.Fatalf("no dial after the peer came back: %v", a.states)
}

// dropTransport loses every datagram a node sends.
type dropTransport struct{ Transport }

func (dropTransport) WritePacket(string, []byte) error { return nil }

// A node whose datagrams are all lost (a firewall dropping its UDP) stays
// alive: the fallback probe over RPC reaches it.
//
// The firewalled node is the seed, so every other node's pool has its
// connection to it up (from the join exchange) before it learns of the
// node and probes it: the fallbacks here are round trips on an open
// connection. Whether a first fallback that must dial and finish a TLS
// handshake fits in the interval depends on the machine;
// TestSimFallbackProbeSlowRPC checks the time the code gives it. The
// fallback has the interval less the probe timeout, 300 ms: under -race
// on two cores, timers ran up to ~90 ms late in the whole package's run,
// which 100 ms (fastConfig's) does not absorb.
func TestUDPFallbackProbe(t *testing.T) {
	const fallbacks = 3 // answered fallback probes per prober
	var nodes []*udpNode
	var subs []*Subscription
	for i := 0; i < 4; i++ {
		cfg := fastConfig("f" + strconv.Itoa(i))
		cfg.ProbeInterval = 400 * time.Millisecond
		var wrap func(Transport) Transport
		if i == 0 {
			wrap = func(tr Transport) Transport { return dropTransport{tr} }
		} else {
			cfg.Seeds = []string{nodes[0].g.Addr()}
		}
		n := startUDPNode(t, cfg, 0, wrap)
		nodes = append(nodes, n)
		if i > 0 {
			// From the start: no suspicion of f0 may ever be seen.
			sub := n.g.Subscribe(0)
			defer sub.Close()
			subs = append(subs, sub)
		}
	}
	cut, probers := nodes[0], nodes[1:]
	// checkEvents fails the test on any event about f0 but its join.
	checkEvents := func() {
		t.Helper()
		for i, sub := range subs {
			for more := true; more; {
				select {
				case ev, ok := <-sub.C:
					if !ok {
						t.Fatalf("%s: subscription closed: %v", probers[i].g.ID(), sub.Err())
					}
					if ev.Member.ID == cut.g.ID() && ev.Kind != EventJoin {
						t.Fatalf("%s: %v %s", probers[i].g.ID(), ev.Kind, ev.Member.ID)
					}
				default:
					more = false
				}
			}
		}
	}
	eventually(t, 5*time.Second, "4 nodes converge", func() bool { checkEvents(); return allSee(nodes, 4) })
	before := cut.g.Stats().ExchangesReceived
	var base []int64
	for _, n := range probers {
		base = append(base, n.g.Stats().FallbackAcks)
	}
	eventually(t, 30*time.Second, "fallback probes answered", func() bool {
		checkEvents()
		for i, n := range probers {
			if n.g.Stats().FallbackAcks-base[i] < fallbacks {
				return false
			}
		}
		return true
	})
	if cut.g.Stats().ExchangesReceived == before {
		t.Fatal("no fallback probe reached the node")
	}
	for _, n := range probers {
		if m, _ := n.g.Member(cut.g.ID()); m.State != StateAlive {
			t.Fatalf("%s sees %s %v", n.g.ID(), cut.g.ID(), m.State)
		}
	}
}
