package gossipbench

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/gossip"
	"github.com/hawser-rpc/hawser/internal/certgen"
	"github.com/hawser-rpc/hawser/pool"
	"github.com/hawser-rpc/hawser/server"
)

// hawserDriver runs hawser nodes as a deployment does: per node an RPC
// server (TLS, cluster key) on a loopback port, a pool, and gossip on UDP
// on the same port. The pools share one event-loop engine; their dials go
// through the target's relay (wire.go).
type hawserDriver struct {
	o    Options
	rec  *recorder
	cert *certgen.Pair
	eng  *conn.Engine
	key  []byte
	rs   relays
}

// frameOverhead is the hawser frame header counted with each exchange
// payload (the TLS record overhead is not counted; see Result).
const frameOverhead = 16

func newHawserDriver(o Options, rec *recorder) (*hawserDriver, error) {
	cert, err := certgen.SelfSigned("localhost", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	eng, err := conn.NewEngine(conn.EngineConfig{})
	if err != nil {
		return nil, err
	}
	return &hawserDriver{o: o, rec: rec, cert: cert, eng: eng, key: benchKey()}, nil
}

func (d *hawserDriver) close() {
	d.rs.closeAll()
	_ = d.eng.Close()
}

// dial is the pools' Dial: conn.Dial through the target's relay.
func (d *hawserDriver) dial(ctx context.Context, e *conn.Engine, addr string, cfg *conn.Config) (*conn.Conn, error) {
	return conn.Dial(ctx, e, d.rs.route(addr), cfg)
}

// hawserConfig is gossip's configuration for the common probe interval p:
// its defaults are memberlist's DefaultLANConfig at p = 1s, and every timer
// scales with p the way memberlistConfig scales memberlist's.
func hawserConfig(p time.Duration) gossip.Config {
	s := func(d time.Duration) time.Duration { return time.Duration(float64(d) * p.Seconds()) }
	return gossip.Config{
		ProbeInterval:       p,
		ProbeTimeout:        s(gossip.DefaultProbeTimeout),
		GossipInterval:      s(gossip.DefaultGossipInterval),
		GossipToTheDeadTime: s(gossip.DefaultGossipToTheDeadTime),
		PushPullInterval:    s(gossip.DefaultPushPullInterval),
		ReconnectInterval:   s(gossip.DefaultReconnectInterval),
		JoinRetryInterval:   s(gossip.DefaultJoinRetryInterval),
		ExchangeTimeout:     s(gossip.DefaultExchangeTimeout),
		// Multipliers (IndirectChecks, SuspicionMult, RetransmitMult,
		// AwarenessMaxMultiplier...) are left at their defaults.
	}
}

type hawserNode struct {
	id   string
	f    *faults
	rel  *relay
	srv  *server.Server
	pool *pool.Pool
	g    *gossip.Gossip
	sub  *gossip.Subscription
	done chan struct{} // the event reader ended
}

func (d *hawserDriver) start(i int, seed string) (node, error) {
	id := fmt.Sprintf("h%02d", i)
	f := newFaults(d.o.Loss, uint64(d.o.Seed)*1000+uint64(i)+1)
	srv, err := server.New(server.Config{BindAddr: "127.0.0.1", Port: -1, Certificate: &d.cert.Cert,
		ClusterKey: d.key, NodeID: id, Logger: quiet})
	if err != nil {
		return nil, err
	}
	p, err := pool.New(pool.Config{Conn: conn.Config{TLS: conn.ClientTLS("", nil), ClusterKey: d.key, NodeID: id},
		Engine: d.eng, Dial: d.dial, Logger: quiet})
	if err != nil {
		return nil, err
	}
	tr, err := gossip.NewUDPTransport(gossip.UDPConfig{Server: srv, Pool: p})
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	go func() { _ = srv.Serve(context.Background()) }()
	<-srv.Ready()
	a := srv.Addr()
	if a == nil {
		_ = p.Close()
		return nil, fmt.Errorf("gossipbench: node %s is not listening", id)
	}
	rel, err := newRelay(a.String(), &f.wireTCP, &f.tcpConns)
	if err != nil {
		_ = srv.Close()
		_ = p.Close()
		return nil, err
	}
	d.rs.add(a.String(), rel) // gossip advertises the server's address
	cfg := hawserConfig(d.o.ProbeInterval)
	cfg.NodeID, cfg.ClusterKey, cfg.Logger = id, d.key, quiet
	cfg.Seed = uint64(d.o.Seed)*1000 + uint64(i) + 1
	if seed != "" {
		cfg.Seeds = []string{seed}
	}
	g, err := gossip.New(cfg, &faultyTransport{inner: tr, f: f})
	if err != nil {
		_ = srv.Close()
		_ = p.Close()
		return nil, err
	}
	n := &hawserNode{id: id, f: f, rel: rel, srv: srv, pool: p, g: g, sub: g.Subscribe(1 << 16), done: make(chan struct{})}
	go n.read(d.rec)
	return n, nil
}

// read records the node's membership events.
func (n *hawserNode) read(rec *recorder) {
	defer close(n.done)
	for ev := range n.sub.C {
		switch ev.Kind {
		case gossip.EventJoin, gossip.EventAlive:
			rec.sawAlive(n.id, ev.Member.ID, ev.Time)
		case gossip.EventDead, gossip.EventLeft:
			rec.sawDead(n.id, ev.Member.ID, ev.Time)
		}
	}
}

func (n *hawserNode) name() string    { return n.id }
func (n *hawserNode) addr() string    { return n.g.Addr() }
func (n *hawserNode) faults() *faults { return n.f }
func (n *hawserNode) alive() int      { return n.g.NumAlive() }

func (n *hawserNode) kill() {
	n.rel.stop()       // first: a dial to a dead node is refused
	_ = n.g.Shutdown() // closes the subscription and the transport
	<-n.done
	_ = n.srv.Close()
	_ = n.pool.Close()
}

// faultyTransport applies the faults to a gossip transport: outgoing
// datagrams, and exchanges in both directions.
type faultyTransport struct {
	inner gossip.Transport
	f     *faults
}

func (t *faultyTransport) Start(h gossip.Handler) error {
	return t.inner.Start(&faultyHandler{inner: h, f: t.f})
}

func (t *faultyTransport) Addr() string { return t.inner.Addr() }

func (t *faultyTransport) WritePacket(addr string, b []byte) error {
	if t.f.sentPacket(len(b)) {
		return nil
	}
	if t.f.stalledNow.Load() {
		if c := bytes.Clone(b); t.f.hold(func() { _ = t.inner.WritePacket(addr, c) }) {
			return nil
		}
	}
	return t.inner.WritePacket(addr, b)
}

func (t *faultyTransport) Call(addr string, req []byte, timeout time.Duration, done func([]byte, error)) error {
	t.f.streamBytes.Add(int64(len(req) + frameOverhead))
	if t.f.stalledNow.Load() {
		if c := bytes.Clone(req); t.f.hold(func() { _ = t.inner.Call(addr, c, timeout, done) }) {
			return nil
		}
	}
	return t.inner.Call(addr, req, timeout, done)
}

// Connected passes the inner transport's answer on (gossip.ConnectedTransport).
func (t *faultyTransport) Connected(addr string) bool {
	ct, ok := t.inner.(gossip.ConnectedTransport)
	return !ok || ct.Connected(addr)
}

func (t *faultyTransport) Close() error { return t.inner.Close() }

type faultyHandler struct {
	inner gossip.Handler
	f     *faults
}

func (h *faultyHandler) HandlePacket(from string, b []byte) {
	if h.f.stalledNow.Load() {
		if c := bytes.Clone(b); h.f.hold(func() { h.inner.HandlePacket(from, c) }) {
			return
		}
	}
	h.inner.HandlePacket(from, b)
}

func (h *faultyHandler) HandleRequest(req []byte) ([]byte, error) {
	h.f.wait()
	resp, err := h.inner.HandleRequest(req)
	h.f.streamBytes.Add(int64(len(resp) + frameOverhead))
	return resp, err
}
