package gossipbench

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// memberlistDriver runs hashicorp/memberlist v0.6.0 nodes on loopback, each
// on its own NetTransport wrapped by faultyMLTransport, encrypted with a
// 32-byte key (AES-256-GCM, as hawser's packets are). Stream dials go
// through the target's relay (wire.go), as hawser's do.
type memberlistDriver struct {
	o   Options
	rec *recorder
	key []byte
	rs  relays
}

func newMemberlistDriver(o Options, rec *recorder) *memberlistDriver {
	return &memberlistDriver{o: o, rec: rec, key: benchKey()}
}

func (d *memberlistDriver) close() { d.rs.closeAll() }

// memberlistConfig is DefaultLANConfig scaled to the probe interval p. The
// LAN defaults are for p = 1s; with s = p / 1s:
//
//	ProbeInterval       1s   -> p
//	ProbeTimeout        500ms -> 500ms * s
//	GossipInterval      200ms -> 200ms * s
//	PushPullInterval    30s  -> 30s * s   (memberlist still stretches it beyond 32 nodes)
//	GossipToTheDeadTime 30s  -> 30s * s
//	TCPTimeout          10s  -> 10s * s
//	QueueCheckInterval  30s  -> 30s * s
//
// The suspicion timeouts are SuspicionMult * log10(n) * ProbeInterval (and
// SuspicionMaxTimeoutMult times that), so they scale through p with their
// multipliers unchanged; so do IndirectChecks, RetransmitMult, GossipNodes
// and AwarenessMaxMultiplier, which are counts. At p = 1s this is exactly
// DefaultLANConfig. hawserConfig scales hawser's identical defaults the
// same way.
func memberlistConfig(p time.Duration) *memberlist.Config {
	s := func(d time.Duration) time.Duration { return time.Duration(float64(d) * p.Seconds()) }
	c := memberlist.DefaultLANConfig()
	c.ProbeInterval = p
	c.ProbeTimeout = s(c.ProbeTimeout)
	c.GossipInterval = s(c.GossipInterval)
	c.PushPullInterval = s(c.PushPullInterval)
	c.GossipToTheDeadTime = s(c.GossipToTheDeadTime)
	c.TCPTimeout = s(c.TCPTimeout)
	c.QueueCheckInterval = s(c.QueueCheckInterval)
	return c
}

type mlNode struct {
	id  string
	f   *faults
	rel *relay
	m   *memberlist.Memberlist
}

func (d *memberlistDriver) start(i int, seed string) (node, error) {
	id := fmt.Sprintf("m%02d", i)
	f := newFaults(d.o.Loss, uint64(d.o.Seed)*1000+uint64(i)+1)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"}, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		return nil, err
	}
	port := nt.GetAutoBindPort()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	rel, err := newRelay(addr, &f.wireTCP, &f.tcpConns)
	if err != nil {
		_ = nt.Shutdown()
		return nil, err
	}
	d.rs.add(addr, rel)
	tr := newFaultyMLTransport(nt, f, &d.rs)
	c := memberlistConfig(d.o.ProbeInterval)
	c.Name = id
	c.BindAddr, c.AdvertiseAddr = "127.0.0.1", "127.0.0.1"
	c.BindPort, c.AdvertisePort = port, port
	c.SecretKey = d.key
	c.Transport = tr
	c.LogOutput = io.Discard
	c.Events = &mlEvents{id: id, rec: d.rec}
	m, err := memberlist.Create(c)
	if err != nil {
		_ = tr.Shutdown()
		return nil, err
	}
	if seed != "" {
		if _, err := m.Join([]string{seed}); err != nil {
			_ = m.Shutdown()
			return nil, err
		}
	}
	return &mlNode{id: id, f: f, rel: rel, m: m}, nil
}

func (n *mlNode) name() string    { return n.id }
func (n *mlNode) faults() *faults { return n.f }
func (n *mlNode) alive() int      { return n.m.NumMembers() }
func (n *mlNode) kill() {
	n.rel.stop() // first: a dial to a dead node is refused
	_ = n.m.Shutdown()
}
func (n *mlNode) addr() string {
	ln := n.m.LocalNode()
	return net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
}

// mlEvents records memberlist's events: NotifyLeave is called for dead and
// left nodes alike.
type mlEvents struct {
	id  string
	rec *recorder
}

func (e *mlEvents) NotifyJoin(n *memberlist.Node)   { e.rec.sawAlive(e.id, n.Name, time.Now()) }
func (e *mlEvents) NotifyLeave(n *memberlist.Node)  { e.rec.sawDead(e.id, n.Name, time.Now()) }
func (e *mlEvents) NotifyUpdate(n *memberlist.Node) {}

// faultyMLTransport applies the faults to memberlist's transport: the same
// loss on outgoing datagrams, the same stall, the same counting as
// faultyTransport does for hawser.
type faultyMLTransport struct {
	inner   *memberlist.NetTransport
	f       *faults
	rs      *relays // stream dials go through the target's relay
	packets chan *memberlist.Packet
	streams chan net.Conn
	// stop ends deliveries to memberlist; innerDone, closed once the
	// inner transport has shut down, ends the forwarders, which drain the
	// inner channels until then (its listeners block sending on them).
	stop, innerDone chan struct{}
	wg              sync.WaitGroup
	once            sync.Once
}

var _ memberlist.NodeAwareTransport = (*faultyMLTransport)(nil)

func newFaultyMLTransport(inner *memberlist.NetTransport, f *faults, rs *relays) *faultyMLTransport {
	t := &faultyMLTransport{inner: inner, f: f, rs: rs, packets: make(chan *memberlist.Packet),
		streams: make(chan net.Conn), stop: make(chan struct{}), innerDone: make(chan struct{})}
	t.wg.Add(2)
	go t.forwardPackets()
	go t.forwardStreams()
	return t
}

func (t *faultyMLTransport) forwardPackets() {
	defer t.wg.Done()
	for {
		select {
		case p := <-t.inner.PacketCh():
			if t.stopped() {
				continue
			}
			if t.f.stalledNow.Load() && t.f.hold(func() {
				p.Timestamp = time.Now() // received when released
				t.deliverPacket(p)
			}) {
				continue
			}
			t.deliverPacket(p)
		case <-t.innerDone:
			return
		}
	}
}

func (t *faultyMLTransport) stopped() bool {
	select {
	case <-t.stop:
		return true
	default:
		return false
	}
}

func (t *faultyMLTransport) deliverPacket(p *memberlist.Packet) {
	select {
	case t.packets <- p:
	case <-t.stop:
	}
}

func (t *faultyMLTransport) forwardStreams() {
	defer t.wg.Done()
	for {
		select {
		case c := <-t.inner.StreamCh():
			if t.stopped() {
				_ = c.Close()
				continue
			}
			c = countConn{Conn: c, n: &t.f.streamBytes}
			if t.f.stalledNow.Load() && t.f.hold(func() { t.deliverStream(c) }) {
				continue
			}
			t.deliverStream(c)
		case <-t.innerDone:
			return
		}
	}
}

func (t *faultyMLTransport) deliverStream(c net.Conn) {
	select {
	case t.streams <- c:
	case <-t.stop:
		_ = c.Close()
	}
}

func (t *faultyMLTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

func (t *faultyMLTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *faultyMLTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.f.sentPacket(len(b)) {
		return time.Now(), nil
	}
	if t.f.stalledNow.Load() {
		if c := bytes.Clone(b); t.f.hold(func() { _, _ = t.inner.WriteToAddress(c, a) }) {
			return time.Now(), nil
		}
	}
	return t.inner.WriteToAddress(b, a)
}

func (t *faultyMLTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *faultyMLTransport) StreamCh() <-chan net.Conn           { return t.streams }

func (t *faultyMLTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *faultyMLTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	t.f.wait()
	c, err := t.inner.DialAddressTimeout(memberlist.Address{Addr: t.rs.route(a.Addr), Name: a.Name}, timeout)
	if err != nil {
		return nil, err
	}
	return countConn{Conn: c, n: &t.f.streamBytes}, nil
}

func (t *faultyMLTransport) Shutdown() error {
	var err error
	t.once.Do(func() {
		close(t.stop)
		err = t.inner.Shutdown()
		close(t.innerDone)
		t.wg.Wait()
	})
	return err
}
