package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/pool"
	"github.com/hawser-rpc/hawser/server"
)

// exchangeMethod carries gossip's exchanges (push-pull, fallback probes)
// over hawser RPC: a sealed request, a sealed response.
var exchangeMethod = hawser.NewMethod[[]byte, []byte]("hawser.gossip.Exchange")

// UDPConfig configures a UDPTransport.
type UDPConfig struct {
	// Server is the node's RPC server; NewUDPTransport registers gossip's
	// method on it, so it must be called before Serve. Required.
	Server *server.Server
	// Pool makes the exchanges with other members; any *pool.Pool with
	// the cluster's TLS and key. Exchanges go over the connections it has
	// open, and a fallback probe that would make it dial waits for the
	// indirect acks first (PROTOCOL.md §5.1). Its defaults suit gossip
	// (README, Gossip, on keepalive and idle timeouts). Required.
	Pool *pool.Pool
	// BindAddr and Port are where UDP binds. Default: the server's
	// listening address, so gossip uses rpc-bind-addr and the rpc-port
	// number (the server must be listening when New starts the transport).
	BindAddr string
	Port     int
	// AdvertiseAddr ("host" or "host:port") is the address other members
	// reach this node at (gossip-advertise-addr). Default: the bound
	// address, or a private address of the host when bound to an
	// unspecified address (0.0.0.0, ::).
	AdvertiseAddr string
	// MaxExchanges bounds the exchanges in flight. Default 32.
	MaxExchanges int
	// ReadBuffer sets the socket's receive buffer (SO_RCVBUF). Default
	// 2 MiB; negative leaves the kernel's default.
	ReadBuffer int
}

// UDPTransport is the production Transport: datagrams over UDP on the RPC
// port, exchanges as hawser RPC calls (TLS, cluster-key authentication)
// through the pool.
type UDPTransport struct {
	cfg UDPConfig
	h   atomic.Pointer[Handler]

	mu       sync.Mutex
	conn     *net.UDPConn
	addr     string
	closed   bool
	serving  sync.WaitGroup // server handlers inside the Handler
	routines sync.WaitGroup // the read loop and exchange calls
	ctx      context.Context
	cancel   context.CancelFunc
	sem      chan struct{}
	from     map[netip.AddrPort]string // read loop only: address strings
}

// Errors of the UDP transport.
var (
	ErrNotListening = errors.New("gossip: the RPC server is not listening yet: start gossip after <-srv.Ready()")
	ErrNotStarted   = errors.New("gossip: node not started")
)

// NewUDPTransport registers gossip's RPC method on cfg.Server (before it
// serves) and returns the transport; New binds it.
func NewUDPTransport(cfg UDPConfig) (*UDPTransport, error) {
	if cfg.Server == nil || cfg.Pool == nil {
		return nil, fmt.Errorf("%w: UDPConfig needs a Server and a Pool", ErrConfig)
	}
	if cfg.MaxExchanges <= 0 {
		cfg.MaxExchanges = 32
	}
	if cfg.ReadBuffer == 0 {
		cfg.ReadBuffer = 2 << 20
	}
	t := &UDPTransport{cfg: cfg, sem: make(chan struct{}, cfg.MaxExchanges), from: map[netip.AddrPort]string{}}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	if err := server.Handle(cfg.Server, exchangeMethod, t.serve); err != nil {
		return nil, err
	}
	return t, nil
}

// Start implements Transport: it binds the UDP socket.
func (t *UDPTransport) Start(h Handler) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrTransportClosed
	}
	if t.conn != nil {
		return errors.New("gossip: transport started twice")
	}
	host, port := t.cfg.BindAddr, t.cfg.Port
	if port == 0 || host == "" {
		a, ok := t.cfg.Server.Addr().(*net.TCPAddr)
		if !ok || a == nil {
			return ErrNotListening
		}
		if port == 0 {
			port = a.Port
		}
		if host == "" {
			host = a.IP.String()
		}
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Errorf("%w: bind address %q is not an IP address", ErrConfig, host)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		return fmt.Errorf("gossip: binding UDP: %w", err)
	}
	if t.cfg.ReadBuffer > 0 {
		_ = conn.SetReadBuffer(t.cfg.ReadBuffer)
	}
	adv, err := advertise(t.cfg.AdvertiseAddr, ip, port)
	if err != nil {
		_ = conn.Close()
		return err
	}
	t.conn, t.addr = conn, adv
	t.h.Store(&h)
	t.routines.Add(1)
	go t.readLoop(conn)
	return nil
}

// advertise resolves the address to announce.
func advertise(cfg string, bound net.IP, port int) (string, error) {
	if cfg != "" {
		if _, _, err := net.SplitHostPort(cfg); err == nil {
			return cfg, nil
		}
		return net.JoinHostPort(cfg, strconv.Itoa(port)), nil
	}
	if !bound.IsUnspecified() {
		return net.JoinHostPort(bound.String(), strconv.Itoa(port)), nil
	}
	ip, err := privateIP()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(port)), nil
}

// privateIP is the host's first private IPv4 address, else its first
// global unicast address.
func privateIP() (net.IP, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var global net.IP
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if n.IP.To4() != nil && n.IP.IsPrivate() {
			return n.IP, nil
		}
		if global == nil && n.IP.IsGlobalUnicast() {
			global = n.IP
		}
	}
	if global == nil {
		return nil, errors.New("gossip: no address to advertise: set gossip-advertise-addr")
	}
	return global, nil
}

// Addr implements Transport.
func (t *UDPTransport) Addr() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addr
}

// readLoop delivers datagrams until the socket closes.
func (t *UDPTransport) readLoop(conn *net.UDPConn) {
	defer t.routines.Done()
	buf := make([]byte, 65536)
	for {
		n, ap, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a transient error (e.g. ICMP feedback); keep reading
		}
		h := t.h.Load()
		if h == nil {
			return
		}
		(*h).HandlePacket(t.fromString(ap), buf[:n])
	}
}

// fromString formats a source address, caching the strings (bounded) so
// that steady traffic allocates nothing.
func (t *UDPTransport) fromString(ap netip.AddrPort) string {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if s, ok := t.from[ap]; ok {
		return s
	}
	if len(t.from) >= 4096 {
		clear(t.from)
	}
	s := ap.String()
	t.from[ap] = s
	return s
}

// WritePacket implements Transport.
func (t *UDPTransport) WritePacket(addr string, b []byte) error {
	t.mu.Lock()
	conn := t.conn
	t.mu.Unlock()
	if conn == nil {
		return ErrTransportClosed
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return err
		}
		ap = ua.AddrPort()
	}
	_, err = conn.WriteToUDPAddrPort(b, ap)
	return err
}

// Connected implements ConnectedTransport: the pool has a connection to
// addr open (its peer is Up).
func (t *UDPTransport) Connected(addr string) bool {
	return t.cfg.Pool.Peer(addr).State() == pool.Up
}

// Call implements Transport with a hawser RPC call to addr through the pool.
// A peer the pool parked (its dials failed rpc-retries-max times) is woken
// first: an exchange is gossip saying it wants to reach the member now.
func (t *UDPTransport) Call(addr string, req []byte, timeout time.Duration, done func([]byte, error)) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrTransportClosed
	}
	select {
	case t.sem <- struct{}{}:
	default:
		return ErrBusy
	}
	req = bytes.Clone(req)
	t.routines.Add(1)
	go func() {
		defer t.routines.Done()
		defer func() { <-t.sem }()
		ctx, cancel := context.WithTimeout(t.ctx, timeout)
		defer cancel()
		peer := t.cfg.Pool.Peer(addr)
		if peer.State() == pool.Parked {
			// Gossip wants this member now (a join through a seed, a
			// sync with a member it sees alive): that is the signal a
			// parked peer waits for.
			t.cfg.Pool.MarkAlive(addr)
		}
		resp, err := exchangeMethod.Call(ctx, peer, req)
		if t.ctx.Err() != nil {
			return // closed: done is not called
		}
		done(resp, err)
	}()
	return nil
}

// serve is the RPC handler of exchangeMethod.
func (t *UDPTransport) serve(_ context.Context, req []byte) ([]byte, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, ErrTransportClosed
	}
	h := t.h.Load()
	if h == nil {
		t.mu.Unlock()
		return nil, ErrNotStarted
	}
	t.serving.Add(1)
	t.mu.Unlock()
	defer t.serving.Done()
	return (*h).HandleRequest(req)
}

// Close implements Transport: it closes the socket and waits for the read
// loop, the exchanges in flight (cancelled) and the handlers running.
func (t *UDPTransport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	conn := t.conn
	t.mu.Unlock()
	t.cancel()
	var err error
	if conn != nil {
		err = conn.Close()
	}
	t.routines.Wait()
	t.serving.Wait()
	t.h.Store(nil)
	return err
}
