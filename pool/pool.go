package pool

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/config"
	"github.com/hawser-rpc/hawser/conn"
)

// Config configures a Pool. Zero values mean the defaults.
type Config struct {
	// Conn is the dialing side's connection configuration: TLS (see
	// conn.ClientTLS for rpc-tls-domain), ClusterKey, NodeID and limits.
	// Its Timeout and InactivityTimeout are set from the fields below.
	Conn conn.Config

	// Timeout bounds each dial: connect + TLS + authentication
	// (rpc-timeout). Default 1s.
	Timeout time.Duration
	// InactivityTimeout closes connections idle this long
	// (rpc-inactivity-timeout); the next call dials again. Default 300s;
	// negative disables.
	InactivityTimeout time.Duration
	// RetriesMax is the number of failed attempts in a row after which a
	// peer is parked until MarkAlive (rpc-retries-max). A failed attempt
	// is a failed dial or a connection that broke before StableAfter.
	// Default 5.
	RetriesMax int
	// BackoffBase is the first retry delay; BackoffMax caps the delays
	// (rpc-backoff-max). Defaults 200ms and 180s.
	BackoffBase, BackoffMax time.Duration
	// StableAfter is how long, by Clock, a connection must stay open after
	// its handshake for its dial to count as a success. One that breaks
	// sooner (with an error other than an idle close, a GOAWAY or a local
	// close: conn.ErrIdle, conn.ErrGoAway, conn.ErrClosed) is a failed
	// attempt: the peer backs off, or is parked after RetriesMax, as after
	// a failed dial, instead of dialing again at once; so a peer that
	// accepts and then drops every connection is dialed at the backoff
	// rate. A connection open StableAfter resets the count, and its break
	// is re-dialed at once. Default max(Timeout, BackoffBase), 1s with the
	// defaults; any positive duration; negative: every connection is
	// stable from its handshake, so a break never counts and is always
	// re-dialed at once.
	StableAfter time.Duration
	// MaxConnsPerPeer bounds the connections to one peer; another is dialed
	// when every connection has the acceptor's limit of calls in flight.
	// Default 4.
	MaxConnsPerPeer int

	// Engine runs the connections; nil: the pool starts and owns one.
	Engine *conn.Engine
	// Clock drives backoff timers and measures StableAfter; nil: real
	// time.
	Clock Clock
	// Dial makes one connection; nil: conn.Dial. Tests wrap it. Its ctx
	// is cancelled when the pool closes, and Close waits for it to return.
	Dial func(ctx context.Context, e *conn.Engine, addr string, cfg *conn.Config) (*conn.Conn, error)
	// OnStateChange, if set, is called on every peer state change, in
	// order for each peer. It must not block.
	OnStateChange func(addr string, from, to State)
	// Logger receives dial failures and parking. Default slog.Default().
	Logger *slog.Logger
}

// Defaults (see Config).
const (
	DefaultBackoffBase     = 200 * time.Millisecond
	DefaultMaxConnsPerPeer = 4
)

// ConfigFromNode builds a Config from a node's configuration file:
// rpc-tls-domain (verified against rpc-ca-path, or the system roots),
// rpc-timeout, rpc-inactivity-timeout, rpc-retries-max, rpc-backoff-max,
// cluster-key and node-id.
func ConfigFromNode(n config.Node) (Config, error) {
	n = n.WithDefaults()
	var roots *x509.CertPool
	if n.CAPath != "" {
		pem, err := os.ReadFile(n.CAPath)
		if err != nil {
			return Config{}, fmt.Errorf("pool: rpc-ca-path: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return Config{}, fmt.Errorf("pool: rpc-ca-path %s holds no PEM certificate", n.CAPath)
		}
	}
	return Config{
		Conn:              conn.Config{ClusterKey: []byte(n.ClusterKey), NodeID: n.NodeID, TLS: conn.ClientTLS(n.TLSDomain, roots)},
		Timeout:           n.Timeout.Duration(),
		InactivityTimeout: n.InactivityTimeout.Duration(),
		RetriesMax:        n.RetriesMax,
		BackoffMax:        n.BackoffMax.Duration(),
	}, nil
}

// State is a peer's connection state.
type State int32

const (
	// Idle: no connection and no dial (at first, and after an idle close).
	// The next call dials.
	Idle State = iota
	// Connecting: a dial is in progress.
	Connecting
	// Up: at least one connection is open.
	Up
	// BackingOff: the last attempt failed (a dial, or a connection that
	// broke before Config.StableAfter); another dial is scheduled. Calls
	// fail at once with ErrPeerUnavailable.
	BackingOff
	// Parked: RetriesMax attempts in a row failed, or gossip reported the
	// peer dead or left. No dial until MarkAlive; calls fail at once.
	Parked
)

func (s State) String() string {
	switch s {
	case Idle:
		return "idle"
	case Connecting:
		return "connecting"
	case Up:
		return "up"
	case BackingOff:
		return "backing-off"
	case Parked:
		return "parked"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// ErrPeerUnavailable matches the error of a call to a peer that is backing
// off or parked. It is also a hawser.ErrTransport.
var ErrPeerUnavailable = errors.New("pool: peer unavailable")

// ErrPoolClosed is returned by calls after Close.
var ErrPoolClosed = errors.New("pool: closed")

// UnavailableError says why a peer refused a call at once: its state and
// the last failed attempt's error (errors.Is matches both
// ErrPeerUnavailable and that error).
type UnavailableError struct {
	Addr  string
	State State
	Err   error // the last failed attempt's error (Stats.LastErr), or nil
}

func (e *UnavailableError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("pool: peer %s unavailable (%s): %v", e.Addr, e.State, e.Err)
	}
	return fmt.Sprintf("pool: peer %s unavailable (%s)", e.Addr, e.State)
}

func (e *UnavailableError) Unwrap() error { return e.Err }
func (e *UnavailableError) Is(target error) bool {
	return target == ErrPeerUnavailable || target == hawser.ErrTransport
}

// Pool dials and keeps connections to peers.
//
// Lock order: Peer.mu, then Pool.mu (a peer asks the pool whether it is
// closed while holding its own lock; the pool never calls into a peer
// while holding its lock).
type Pool struct {
	// Immutable after New.
	cfg     Config
	backoff Backoff
	clock   Clock
	log     *slog.Logger
	eng     *conn.Engine
	ownEng  bool
	// ctx is cancelled by Close, under mu right after closed is set: it
	// wakes callers waiting on a dial and aborts dials in progress.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	peers  map[string]*Peer
	closed bool
	dials  sync.WaitGroup // dial goroutines; Add only under mu while !closed
}

// New returns a Pool. Conn must carry TLS (or InsecurePlaintext) and a
// ClusterKey.
func New(cfg Config) (*Pool, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = conn.DefaultTimeout
	}
	if cfg.InactivityTimeout == 0 {
		cfg.InactivityTimeout = conn.DefaultInactivityTimeout
	}
	if cfg.RetriesMax <= 0 {
		cfg.RetriesMax = config.DefaultRetriesMax
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = DefaultBackoffBase
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = config.DefaultBackoffMax.Duration()
	}
	if cfg.StableAfter == 0 {
		cfg.StableAfter = max(cfg.Timeout, cfg.BackoffBase)
	}
	if cfg.MaxConnsPerPeer <= 0 {
		cfg.MaxConnsPerPeer = DefaultMaxConnsPerPeer
	}
	if cfg.Dial == nil {
		cfg.Dial = conn.Dial
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Conn.ClusterKey) < 16 {
		return nil, fmt.Errorf("%w: pool needs a cluster key of at least 16 bytes", conn.ErrConfig)
	}
	p := &Pool{
		cfg:     cfg,
		backoff: Backoff{Base: cfg.BackoffBase, Max: cfg.BackoffMax},
		clock:   cfg.Clock,
		log:     cfg.Logger,
		eng:     cfg.Engine,
		peers:   map[string]*Peer{},
	}
	if p.clock == nil {
		p.clock = realClock{}
	}
	if p.eng == nil {
		eng, err := conn.NewEngine(conn.EngineConfig{})
		if err != nil {
			return nil, err
		}
		p.eng, p.ownEng = eng, true
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// Peer returns the peer at addr (host:port), creating it idle. After
// Close the peer is closed too: its calls fail with ErrPoolClosed.
func (p *Pool) Peer(addr string) *Peer {
	p.mu.Lock()
	defer p.mu.Unlock()
	pe := p.peers[addr]
	if pe == nil {
		pe = &Peer{pool: p, addr: addr, closed: p.closed}
		pe.cfg = p.cfg.Conn
		pe.cfg.Timeout = p.cfg.Timeout
		pe.cfg.InactivityTimeout = p.cfg.InactivityTimeout
		pe.cfg.OnClose = pe.onConnClose
		p.peers[addr] = pe
	}
	return pe
}

// MarkAlive tells the pool that addr is alive (gossip saw it). A parked or
// backing-off peer is dialed at once, with a fresh retry budget.
func (p *Pool) MarkAlive(addr string) {
	p.Peer(addr).wake()
}

// MarkDead tells the pool that addr is dead or has left: the peer is parked
// and its connections are closed. Calls fail at once until MarkAlive.
func (p *Pool) MarkDead(addr string) {
	p.Peer(addr).park()
}

// Peers returns the addresses the pool knows and their states.
func (p *Pool) Peers() map[string]State {
	p.mu.Lock()
	peers := make([]*Peer, 0, len(p.peers))
	for _, pe := range p.peers {
		peers = append(peers, pe)
	}
	p.mu.Unlock()
	out := make(map[string]State, len(peers))
	for _, pe := range peers {
		out[pe.addr] = pe.State()
	}
	return out
}

// Close closes every connection, stops the timers, aborts the dials in
// progress and waits for them. Calls fail at once with an error matching
// ErrPoolClosed from then on, including calls already waiting on a dial
// and calls on peers created after Close.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.cancel()
	peers := make([]*Peer, 0, len(p.peers))
	for _, pe := range p.peers {
		peers = append(peers, pe)
	}
	p.mu.Unlock()
	for _, pe := range peers {
		pe.close()
	}
	p.dials.Wait()
	if p.ownEng {
		return p.eng.Close()
	}
	return nil
}

// isClosed reports whether Close has begun; it takes no lock.
func (p *Pool) isClosed() bool { return p.ctx.Err() != nil }

// addDial accounts for a dial goroutine about to start, unless the pool is
// closed: then it returns false and no dial may start. Checking closed and
// adding to dials under one lock keeps Add from racing Close's Wait.
func (p *Pool) addDial() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.dials.Add(1)
	return true
}
