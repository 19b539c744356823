package gossip

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
)

// Hostile datagrams ("Done when", third bullet): random bytes, truncated,
// replayed, oversize, wrong key, wrong cluster name, authentic envelopes
// with garbage inside. Each is dropped and counted, without a panic and
// without allocating.

// newLoneNode is a node on an in-memory transport whose clock never runs.
func newLoneNode(t testing.TB, id string) (*Gossip, *MemNetwork) {
	clock := NewVirtualClock(time.Unix(1_000_000_000, 0))
	net := NewMemNetwork(clock, 1)
	g, err := New(Config{NodeID: id, ClusterKey: testKey, Clock: clock, Seed: 1, Logger: quiet}, net.Transport(id+":7911"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	return g, net
}

type hostileCase struct {
	name    string
	packets [][]byte
	counter func(Stats) int64
}

func hostileCases(t testing.TB, g *Gossip) []hostileCase {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	other, err := NewKeyring([]byte("some-other-cluster-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	valid := g.keys.seal(nil, appendPing([]byte{protoVersion}, 1, "nobody", "somebody"), g.ad)
	var randoms, truncated, garbage [][]byte
	for n := 0; n < 100; n++ {
		randoms = append(randoms, random(n*13))
		r := random(n * 13)
		if len(r) > 0 {
			r[0] = envelopeV1 // looks like an envelope
		}
		randoms = append(randoms, r)
		garbage = append(garbage, g.keys.seal(nil, append([]byte{protoVersion}, random(n)...), g.ad))
	}
	for i := 0; i < len(valid); i++ {
		truncated = append(truncated, valid[:i])
	}
	return []hostileCase{
		{"random", randoms, func(s Stats) int64 { return s.DecryptFailures }},
		{"truncated", truncated, func(s Stats) int64 { return s.DecryptFailures }},
		{"oversize", [][]byte{random(DefaultMaxPacketSize + 1), random(65000)}, func(s Stats) int64 { return s.Oversize }},
		{"wrong key", [][]byte{other.seal(nil, []byte{protoVersion}, g.ad)}, func(s Stats) int64 { return s.DecryptFailures }},
		{"wrong cluster", [][]byte{g.keys.seal(nil, []byte{protoVersion}, sealAD("other"))}, func(s Stats) int64 { return s.DecryptFailures }},
		{"replayed", [][]byte{valid}, func(s Stats) int64 { return s.Replayed }},
		{"garbage inside", garbage, func(s Stats) int64 { return s.Malformed + s.Replayed }},
	}
}

func TestHostileDatagramsDropped(t *testing.T) {
	g, _ := newLoneNode(t, "target")
	for _, c := range hostileCases(t, g) {
		for _, p := range c.packets {
			g.handlePacket("10.9.9.9:7911", p) // first pass: a replay's original is accepted here
		}
		before := c.counter(g.Stats())
		allocs := testing.AllocsPerRun(20, func() {
			for _, p := range c.packets {
				g.handlePacket("10.9.9.9:7911", p)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per round", c.name, allocs)
		}
		if got := c.counter(g.Stats()) - before; got < int64(len(c.packets))*20 {
			t.Errorf("%s: counted %d drops of %d", c.name, got, len(c.packets)*20)
		}
	}
	if n := len(g.Members()); n != 1 {
		t.Fatalf("hostile input changed the membership: %v", g.Members())
	}
}

// Hostile requests (the push-pull and fallback handler) are refused the
// same way.
func TestHostileRequestsRefused(t *testing.T) {
	g, _ := newLoneNode(t, "target")
	for _, c := range hostileCases(t, g) {
		for _, p := range c.packets {
			if resp, err := g.handleRequest(p); err == nil && c.name != "garbage inside" {
				t.Fatalf("%s: answered %x", c.name, resp)
			}
		}
	}
	if n := len(g.Members()); n != 1 {
		t.Fatalf("hostile input changed the membership: %v", g.Members())
	}
}

// Over real UDP: a raw socket throws every kind of hostile datagram at a
// node of a 2-node cluster, which keeps working.
func TestUDPHostileDatagrams(t *testing.T) {
	a := startUDPNode(t, fastConfig("h0"), 0, nil)
	cfg := fastConfig("h1")
	cfg.Seeds = []string{a.g.Addr()}
	b := startUDPNode(t, cfg, 0, nil)
	eventually(t, 5*time.Second, "2 nodes converge", func() bool { return allSee([]*udpNode{a, b}, 2) })

	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: a.port()}
	before := a.g.Stats()
	sent := 0
	for round := 0; round < 5; round++ {
		for _, c := range hostileCases(t, a.g) {
			for _, p := range c.packets {
				if _, err := sock.WriteToUDP(p, to); err == nil {
					sent++
				}
			}
		}
		time.Sleep(20 * time.Millisecond) // pace the flood for the socket buffer
	}
	eventually(t, 5*time.Second, "the datagrams are counted", func() bool {
		st := a.g.Stats()
		dropped := st.DecryptFailures + st.Oversize + st.Replayed + st.Malformed -
			(before.DecryptFailures + before.Oversize + before.Replayed + before.Malformed)
		return dropped >= int64(sent)*9/10 // a few may be lost on loopback
	})
	time.Sleep(500 * time.Millisecond)
	if !allSee([]*udpNode{a, b}, 2) {
		t.Fatal("the cluster broke")
	}
	if m, _ := a.g.Member("h1"); m.State != StateAlive {
		t.Fatalf("h1 is %v", m.State)
	}
	t.Logf("%s datagrams dropped and counted", strconv.Itoa(sent))
}

// A compressed push-pull state that claims a huge decoded size is refused
// before anything is allocated.
func TestCompressedStateBomb(t *testing.T) {
	for _, n := range []uint64{1 << 30, 1 << 24, 100000} {
		body := binary.AppendUvarint(nil, n)
		body = append(body, 0, 0, 0)
		allocs := testing.AllocsPerRun(10, func() {
			if _, err := stateBody(msgPushPullS2, body); err == nil {
				t.Fatal("accepted")
			}
		})
		if allocs != 0 {
			t.Fatalf("claimed %d bytes: %v allocations", n, allocs)
		}
	}
	honest := appendPushPullHeader(nil, false, "x", 0)
	if got, err := stateBody(msgPushPullS2, s2.Encode(nil, honest)); err != nil || !bytes.Equal(got, honest) {
		t.Fatalf("honest block: %v", err)
	}
}
