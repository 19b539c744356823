package raft

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/pool"
	"github.com/hawser-rpc/hawser/server"
)

// The transport's methods (PROTOCOL.md, "Methods"). Their names are part
// of the protocol: a method's ID is a hash of its name.
const (
	nameAppend    = "raft.AppendEntries"
	nameHeartbeat = "raft.Heartbeat"
	nameVote      = "raft.RequestVote"
	namePreVote   = "raft.RequestPreVote"
	nameTimeout   = "raft.TimeoutNow"
	nameSnapOpen  = "raft.Snapshot.Open"
	nameSnapChunk = "raft.Snapshot.Chunk"
	nameSnapDone  = "raft.Snapshot.Done"
	nameSnapAbort = "raft.Snapshot.Abort"
)

var (
	mAppend    = codec.MethodID(nameAppend)
	mHeartbeat = codec.MethodID(nameHeartbeat)
	mVote      = codec.MethodID(nameVote)
	mPreVote   = codec.MethodID(namePreVote)
	mTimeout   = codec.MethodID(nameTimeout)
	mSnapOpen  = codec.MethodID(nameSnapOpen)
	mSnapChunk = codec.MethodID(nameSnapChunk)
	mSnapDone  = codec.MethodID(nameSnapDone)
	mSnapAbort = codec.MethodID(nameSnapAbort)
)

// urgent is the call option of heartbeats, votes and TimeoutNow: small
// messages that decide liveness, sent and answered ahead of bulk data
// (PROTOCOL.md §9 of hawser).
var urgent = []hawser.CallOption{hawser.Urgent()}

// Transport is a hashicorp/raft Transport over hawser: RPCs go as hawser
// calls on the pool's connections to the peers and are served by the
// server's handlers. It implements raft.Transport, raft.WithClose and
// raft.WithPreVote. Safe for concurrent use.
type Transport struct {
	// Immutable after New.
	cfg      Config
	srv      *server.Server
	pool     *pool.Pool
	consumer chan hraft.RPC

	// ctx ends at Close: every outgoing call and every wait of a handler
	// ends with it.
	ctx    context.Context
	cancel context.CancelFunc

	// live orders handlers against Close: a handler holds it read-locked
	// from its closed check until it has handed the RPC to raft (or given
	// up), and Close takes it write-locked after cancelling ctx, so once
	// Close returns no RPC reaches raft (hashicorp/raft#717).
	live      sync.RWMutex
	closed    atomic.Bool
	closeOnce sync.Once

	hbMu sync.Mutex
	hb   func(hraft.RPC) // guarded by hbMu

	localOnce sync.Once
	local     hraft.ServerAddress

	mu        sync.Mutex
	pipelines map[*pipeline]struct{} // guarded by mu; closed by Close
	sessions  map[uint64]*session    // guarded by mu: snapshots being received
	nextSess  uint64                 // guarded by mu
	bulk      map[string]*bulkConn   // guarded by mu: by peer address

	// wg counts the goroutines the transport owns (pipelines' feeders,
	// snapshot sessions' watchers); Close waits for them. Adds happen under
	// mu while draining is false; Close sets draining, then waits.
	wg       sync.WaitGroup
	draining bool // guarded by mu

	stats stats
}

type stats struct {
	heartbeats, refused, snapshots, excess atomic.Int64
}

// Stats are counters of a Transport's received traffic.
type Stats struct {
	// Heartbeats is the heartbeats handed to raft's heartbeat handler.
	Heartbeats int64
	// Refused is the RPCs refused because the transport was closed.
	Refused int64
	// Snapshots is the InstallSnapshot RPCs handed to raft.
	Snapshots int64
	// ExcessBytes is snapshot bytes received beyond a snapshot's Size and
	// discarded.
	ExcessBytes int64
}

// Stats returns a snapshot of the counters.
func (t *Transport) Stats() Stats {
	return Stats{
		Heartbeats:  t.stats.heartbeats.Load(),
		Refused:     t.stats.refused.Load(),
		Snapshots:   t.stats.snapshots.Load(),
		ExcessBytes: t.stats.excess.Load(),
	}
}

var (
	_ hraft.Transport   = (*Transport)(nil)
	_ hraft.WithClose   = (*Transport)(nil)
	_ hraft.WithPreVote = (*Transport)(nil)
)

// New registers the raft methods on cfg.Server (before it serves) and
// returns the transport.
func New(cfg Config) (*Transport, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t := &Transport{
		cfg:       c,
		srv:       c.Server,
		pool:      c.Pool,
		consumer:  make(chan hraft.RPC),
		pipelines: map[*pipeline]struct{}{},
		sessions:  map[uint64]*session{},
		bulk:      map[string]*bulkConn{},
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	for _, r := range []struct {
		name string
		mode conn.Mode
		h    conn.UnaryHandler
	}{
		// AppendEntries of one leader run one at a time in arrival order
		// (one pipeline is one connection).
		{nameAppend, conn.ModeOrdered, t.serveAppend},
		// These never wait behind appends: on the shared worker pool. A
		// snapshot's chunks put themselves in order (serveSnapChunk): an
		// append raft cannot take while it installs must not hold them.
		{nameSnapOpen, conn.ModePool, t.serveSnapOpen},
		{nameSnapChunk, conn.ModePool, t.serveSnapChunk},
		{nameSnapDone, conn.ModePool, t.serveSnapDone},
		{nameSnapAbort, conn.ModePool, t.serveSnapAbort},
		{nameHeartbeat, conn.ModePool, t.serveHeartbeat},
		{nameVote, conn.ModePool, t.serveVote},
		{namePreVote, conn.ModePool, t.servePreVote},
		{nameTimeout, conn.ModePool, t.serveTimeoutNow},
	} {
		// Keep: the handlers keep their requests (raft keeps the entries;
		// the queued chunks), so the copies are made at their exact size.
		if err := server.HandleRaw(c.Server, r.name, &conn.Route{Mode: r.mode, Unary: r.h, Keep: r.name != nameSnapDone && r.name != nameSnapAbort}); err != nil {
			t.cancel()
			return nil, fmt.Errorf("raft: registering %s: %w", r.name, err)
		}
	}
	return t, nil
}

// Consumer is where raft receives the RPCs peers send.
func (t *Transport) Consumer() <-chan hraft.RPC { return t.consumer }

// LocalAddr is this node's address (Config.LocalAddr, or the server's
// listening address; it waits for the server to listen).
func (t *Transport) LocalAddr() hraft.ServerAddress {
	t.localOnce.Do(func() {
		t.local = t.cfg.LocalAddr
		if t.local == "" {
			if a := t.srv.Addr(); a != nil {
				t.local = hraft.ServerAddress(a.String())
			}
		}
	})
	return t.local
}

// EncodePeer encodes a peer's address as raft stores it in its
// configuration: the address's bytes.
func (t *Transport) EncodePeer(_ hraft.ServerID, addr hraft.ServerAddress) []byte {
	return []byte(addr)
}

// DecodePeer is EncodePeer's inverse.
func (t *Transport) DecodePeer(b []byte) hraft.ServerAddress { return hraft.ServerAddress(b) }

// SetHeartbeatHandler sets the handler heartbeats go to, on a worker of
// the server's pool, without waiting behind the consumer; nil sends them
// to the consumer like any AppendEntries.
func (t *Transport) SetHeartbeatHandler(cb func(hraft.RPC)) {
	t.hbMu.Lock()
	t.hb = cb
	t.hbMu.Unlock()
}

// Close shuts the transport down: calls in flight fail at once, pipelines
// close, snapshots being received fail, and RPCs arriving later are refused
// (CodeShutdown) without reaching raft. It does not close the Server or
// the Pool. It waits for the transport's own goroutines, which end
// promptly, and for a call of raft's heartbeat handler already under way
// (so none starts or runs after Close returns). Close is idempotent.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.closed.Store(true)
		t.cancel()
		t.live.Lock()   // barrier: handlers inside have given up or delivered
		t.live.Unlock() //nolint:staticcheck // SA2001: the empty critical section is the barrier
		t.mu.Lock()
		ps := make([]*pipeline, 0, len(t.pipelines))
		for p := range t.pipelines {
			ps = append(ps, p)
		}
		ss := make([]*session, 0, len(t.sessions))
		for _, s := range t.sessions {
			ss = append(ss, s)
		}
		t.mu.Unlock()
		for _, p := range ps {
			_ = p.Close()
		}
		for _, s := range ss {
			s.abort(hraft.ErrTransportShutdown)
		}
		t.mu.Lock()
		bulk := t.bulk
		t.bulk = map[string]*bulkConn{}
		t.draining = true // no wg.Add from here on: Wait may start
		t.mu.Unlock()
		for _, b := range bulk {
			if b.c != nil {
				_ = b.c.Close()
			}
		}
		t.wg.Wait()
	})
	return nil
}

// spawn runs f on a goroutine Close waits for, unless Close is already
// waiting (then it reports false and f does not run).
func (t *Transport) spawn(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.draining {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// isClosed reports whether Close has started.
func (t *Transport) isClosed() bool { return t.closed.Load() }

// peer returns the pool's peer for a raft server, resolving its address
// through the AddressProvider when there is one.
func (t *Transport) peer(id hraft.ServerID, target hraft.ServerAddress) *pool.Peer {
	addr := target
	if p := t.cfg.AddressProvider; p != nil {
		if a, err := p.ServerAddr(id); err == nil && a != "" {
			addr = a
		} else if err != nil {
			t.cfg.Logger.Warn("raft: address provider failed; using raft's address",
				"id", id, "addr", target, "err", err)
		}
	}
	return t.pool.Peer(string(addr))
}

// bulkConn is the dedicated connection to one peer that carries its
// appends and snapshots (Peer.Dedicated): their bytes, once in the socket
// buffers, would otherwise sit ahead of heartbeats that hawser's priority
// cannot reach any more. Heartbeats, votes and TimeoutNow take the
// pool's shared connections.
type bulkConn struct {
	c       *conn.Conn    // nil while dialing
	dialing chan struct{} // closed when the dial ends; nil after
}

// bulkConnTo returns the dedicated connection to pe, dialing one if none
// is open (one dial at a time per peer). If the dial fails it returns a
// shared connection instead (Peer.Conn), which keeps the pool's backoff
// and parking.
func (t *Transport) bulkConnTo(ctx context.Context, pe *pool.Peer) (*conn.Conn, error) {
	addr := pe.Addr()
	t.mu.Lock()
	for {
		if t.isClosed() {
			t.mu.Unlock()
			return nil, hraft.ErrTransportShutdown
		}
		b := t.bulk[addr]
		if b == nil {
			break
		}
		if b.dialing != nil {
			wait := b.dialing
			t.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			t.mu.Lock()
			continue
		}
		if b.c.Err() == nil && !b.c.Draining() {
			c := b.c
			t.mu.Unlock()
			return c, nil
		}
		delete(t.bulk, addr) // closed or going away: dial another
		break
	}
	b := &bulkConn{dialing: make(chan struct{})}
	t.bulk[addr] = b
	t.mu.Unlock()
	c, err := pe.Dedicated(ctx)
	t.mu.Lock()
	close(b.dialing)
	b.dialing = nil
	closed := t.isClosed()
	if err != nil || closed {
		if t.bulk[addr] == b {
			delete(t.bulk, addr)
		}
	} else {
		b.c = c
	}
	t.mu.Unlock()
	if closed {
		if c != nil {
			_ = c.Close()
		}
		return nil, hraft.ErrTransportShutdown
	}
	if err != nil {
		t.cfg.Logger.Debug("raft: dedicated connection failed; using a shared one", "peer", addr, "err", err)
		return pe.Conn(ctx)
	}
	return c, nil
}

// callErr turns a failed call into the error raft sees: the transport's
// shutdown once Close has started, else the call's error with the peer.
func (t *Transport) callErr(op string, target hraft.ServerAddress, err error) error {
	if t.isClosed() {
		return hraft.ErrTransportShutdown
	}
	return fmt.Errorf("raft: %s to %s: %w", op, target, err)
}

// bufPool recycles request encodings (calls copy their request before they
// return).
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= 1<<20 {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

// unary makes one call and returns the body of a successful reply, or the
// error (a *RemoteError when the peer's transport refused or raft failed).
func (t *Transport) unary(op string, id hraft.ServerID, target hraft.ServerAddress, method uint64, body []byte, timeout time.Duration, opts []hawser.CallOption) ([]byte, error) {
	if t.isClosed() {
		return nil, hraft.ErrTransportShutdown
	}
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	resp, err := t.peer(id, target).Call(ctx, method, body, opts...)
	if err != nil {
		return nil, t.callErr(op, target, err)
	}
	b, err := decodeReply(resp)
	if err != nil {
		return nil, fmt.Errorf("raft: %s to %s: %w", op, target, err)
	}
	return b, nil
}

// bulkCall makes one call on the peer's dedicated connection.
func (t *Transport) bulkCall(op string, id hraft.ServerID, target hraft.ServerAddress, method uint64, body []byte, timeout time.Duration) ([]byte, error) {
	if t.isClosed() {
		return nil, hraft.ErrTransportShutdown
	}
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	c, err := t.bulkConnTo(ctx, t.peer(id, target))
	if err != nil {
		return nil, t.callErr(op, target, err)
	}
	resp, err := c.Call(ctx, method, body)
	if err != nil {
		return nil, t.callErr(op, target, err)
	}
	b, err := decodeReply(resp)
	if err != nil {
		return nil, fmt.Errorf("raft: %s to %s: %w", op, target, err)
	}
	return b, nil
}

// AppendEntries sends one AppendEntries and waits for its response.
// A heartbeat (raft's predicate, isHeartbeat) goes as an urgent call with
// the heartbeat timeout.
func (t *Transport) AppendEntries(id hraft.ServerID, target hraft.ServerAddress, args *hraft.AppendEntriesRequest, resp *hraft.AppendEntriesResponse) error {
	buf := getBuf()
	*buf = appendAppendEntriesRequest((*buf)[:0], args)
	var b []byte
	var err error
	if isHeartbeat(args) {
		b, err = t.unary("heartbeat", id, target, mHeartbeat, *buf, t.cfg.HeartbeatTimeout, urgent)
	} else {
		b, err = t.bulkCall("AppendEntries", id, target, mAppend, *buf, t.cfg.Timeout)
	}
	putBuf(buf)
	if err != nil {
		return err
	}
	return decodeAppendEntriesResponse(b, resp)
}

// RequestVote sends a vote request (urgent).
func (t *Transport) RequestVote(id hraft.ServerID, target hraft.ServerAddress, args *hraft.RequestVoteRequest, resp *hraft.RequestVoteResponse) error {
	return urgentRPC(t, "RequestVote", id, target, mVote, args, resp, appendRequestVoteRequest, decodeRequestVoteResponse)
}

// RequestPreVote sends a pre-vote request (urgent).
func (t *Transport) RequestPreVote(id hraft.ServerID, target hraft.ServerAddress, args *hraft.RequestPreVoteRequest, resp *hraft.RequestPreVoteResponse) error {
	return urgentRPC(t, "RequestPreVote", id, target, mPreVote, args, resp, appendRequestPreVoteRequest, decodeRequestPreVoteResponse)
}

// TimeoutNow asks the target to start an election now (urgent).
func (t *Transport) TimeoutNow(id hraft.ServerID, target hraft.ServerAddress, args *hraft.TimeoutNowRequest, resp *hraft.TimeoutNowResponse) error {
	return urgentRPC(t, "TimeoutNow", id, target, mTimeout, args, resp, appendTimeoutNowRequest, decodeTimeoutNowResponse)
}

// urgentRPC encodes args, makes one urgent call on a shared connection with
// Timeout, and decodes the response into resp.
func urgentRPC[Req, Resp any](t *Transport, op string, id hraft.ServerID, target hraft.ServerAddress, method uint64,
	args *Req, resp *Resp, enc func([]byte, *Req) []byte, dec func([]byte, *Resp) error) error {
	buf := getBuf()
	*buf = enc((*buf)[:0], args)
	b, err := t.unary(op, id, target, method, *buf, t.cfg.Timeout, urgent)
	putBuf(buf)
	if err != nil {
		return err
	}
	return dec(b, resp)
}

// isHeartbeat is raft's own heartbeat predicate (NetworkTransport's
// handleCommand).
func isHeartbeat(a *hraft.AppendEntriesRequest) bool {
	leader := a.Addr
	if len(leader) == 0 {
		leader = a.Leader //nolint:staticcheck // raft's predicate reads it for peers older than RPCHeader.Addr
	}
	return a.Term != 0 && leader != nil && a.PrevLogEntry == 0 && a.PrevLogTerm == 0 &&
		len(a.Entries) == 0 && a.LeaderCommitIndex == 0
}
