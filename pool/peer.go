package pool

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/conn"
)

// Peer is one remote node: a hawser.Caller whose calls go over one of its
// connections. Safe for concurrent use.
type Peer struct {
	pool *Pool
	addr string
	cfg  conn.Config // per peer: OnClose reports to this Peer

	mu       sync.Mutex
	state    State
	conns    []*conn.Conn // open when adopted by dial; removed by onConnClose, park, close
	dialing  bool
	dialDone chan struct{} // closed when the dial in progress ends
	attempts int           // failed dials since the last success or wake
	lastErr  error
	timer    Timer // the scheduled retry while BackingOff
	closed   bool
}

// Addr is the peer's address.
func (pe *Peer) Addr() string { return pe.addr }

// State is the peer's current state.
func (pe *Peer) State() State {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	return pe.state
}

// Stats is a snapshot of a peer.
type Stats struct {
	State    State
	Conns    int
	Attempts int   // failed dials since the last success
	LastErr  error // the last dial error
}

// Stats returns a snapshot.
func (pe *Peer) Stats() Stats {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	return Stats{State: pe.state, Conns: len(pe.conns), Attempts: pe.attempts, LastErr: pe.lastErr}
}

// maxGoAwayRetries bounds how often a call refused by a draining connection
// (not processed there) is retried on another.
const maxGoAwayRetries = 2

// Call makes a unary call on one of the peer's connections, dialing one if
// needed. See conn.Conn.Call for the semantics; additionally a parked or
// backing-off peer fails at once with an error matching
// ErrPeerUnavailable.
func (pe *Peer) Call(ctx context.Context, method uint64, req []byte, opts ...hawser.CallOption) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		c, err := pe.conn(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := c.Call(ctx, method, req, opts...)
		if err != nil && attempt < maxGoAwayRetries && errors.Is(err, conn.ErrGoAway) {
			continue
		}
		return resp, err
	}
}

// OpenStream opens a stream on one of the peer's connections.
func (pe *Peer) OpenStream(ctx context.Context, method uint64, req []byte, opts ...hawser.CallOption) (hawser.RawStream, error) {
	for attempt := 0; ; attempt++ {
		c, err := pe.conn(ctx)
		if err != nil {
			return nil, err
		}
		s, err := c.OpenStream(ctx, method, req, opts...)
		if err != nil && attempt < maxGoAwayRetries && errors.Is(err, conn.ErrGoAway) {
			continue
		}
		return s, err
	}
}

// conn returns a connection for a call: the least loaded one that is not
// draining, dialing when there is none.
func (pe *Peer) conn(ctx context.Context) (*conn.Conn, error) {
	pe.mu.Lock()
	for {
		if pe.closed || pe.pool.isClosed() {
			pe.mu.Unlock()
			return nil, pe.closedError()
		}
		if c := pe.pickLocked(); c != nil {
			pe.mu.Unlock()
			return c, nil
		}
		switch pe.state {
		case Parked, BackingOff:
			err := &UnavailableError{Addr: pe.addr, State: pe.state, Err: pe.lastErr}
			pe.mu.Unlock()
			return nil, err
		}
		if !pe.dialing && !pe.startDialLocked() {
			pe.mu.Unlock()
			return nil, pe.closedError()
		}
		wait := pe.dialDone
		pe.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-pe.pool.ctx.Done():
			return nil, pe.closedError()
		}
		pe.mu.Lock()
		if len(pe.conns) == 0 && pe.lastErr != nil && pe.state != Connecting {
			// This caller's dial failed: report it (state BackingOff/Parked).
			err := &UnavailableError{Addr: pe.addr, State: pe.state, Err: pe.lastErr}
			pe.mu.Unlock()
			return nil, err
		}
	}
}

func (pe *Peer) closedError() error {
	return &hawser.TransportError{Op: "call", Addr: pe.addr, Err: ErrPoolClosed}
}

// pickLocked returns the least loaded open connection, starting another
// dial when all have the acceptor's limit of calls in flight.
func (pe *Peer) pickLocked() *conn.Conn {
	var best *conn.Conn
	bestLoad := 0
	for _, c := range pe.conns {
		if c.Draining() {
			continue
		}
		if load := c.InFlight(); best == nil || load < bestLoad {
			best, bestLoad = c, load
		}
	}
	if best != nil && bestLoad >= best.MaxCalls() && len(pe.conns) < pe.pool.cfg.MaxConnsPerPeer && !pe.dialing {
		pe.startDialLocked()
	}
	return best
}

// setStateLocked changes state and reports it.
func (pe *Peer) setStateLocked(s State) {
	if pe.state == s {
		return
	}
	from := pe.state
	pe.state = s
	if s == Parked {
		pe.pool.log.Warn("hawser: peer parked until gossip sees it alive", "peer", pe.addr, "attempts", pe.attempts, "err", pe.lastErr)
	}
	if f := pe.pool.cfg.OnStateChange; f != nil {
		f(pe.addr, from, s)
	}
}

// startDialLocked starts one background dial and reports true, or reports
// false when the pool is closed: then no dial starts and dialDone is not
// renewed, so a caller must not wait for it.
func (pe *Peer) startDialLocked() bool {
	if !pe.pool.addDial() {
		return false
	}
	pe.dialing = true
	pe.dialDone = make(chan struct{})
	if len(pe.conns) == 0 {
		pe.setStateLocked(Connecting)
	}
	go pe.dial(pe.dialDone)
	return true
}

// dial makes one connection; the pool owns it (Close cancels its context
// and waits for it).
func (pe *Peer) dial(done chan struct{}) {
	defer pe.pool.dials.Done()
	c, err := pe.pool.cfg.Dial(pe.pool.ctx, pe.pool.eng, pe.addr, &pe.cfg)
	pe.mu.Lock()
	pe.dialing = false
	if pe.closed || pe.pool.isClosed() || pe.state == Parked {
		pe.mu.Unlock()
		close(done)
		if c != nil {
			_ = c.Close() // its OnClose takes pe.mu: not under it
		}
		return
	}
	defer pe.mu.Unlock()
	defer close(done)
	if err == nil {
		select {
		case <-c.Done():
			// It closed before it could be adopted. conn.Conn closes Done
			// before it calls OnClose, and onConnClose takes pe.mu: so
			// onConnClose ran or will run and finds c in no list. Count
			// the attempt as failed here, or no one does.
			err, c = c.Err(), nil
		default:
			// Still open under pe.mu: its OnClose comes after this
			// critical section and finds c in pe.conns.
		}
	}
	if err == nil {
		pe.conns = append(pe.conns, c)
		pe.attempts, pe.lastErr = 0, nil
		pe.setStateLocked(Up)
		return
	}
	pe.attempts++
	pe.lastErr = err
	pe.pool.log.Debug("hawser: dial failed", "peer", pe.addr, "attempt", pe.attempts, "err", err)
	if len(pe.conns) > 0 {
		return // an extra connection failed; the peer stays Up
	}
	if pe.attempts >= pe.pool.cfg.RetriesMax {
		pe.setStateLocked(Parked)
		return
	}
	pe.setStateLocked(BackingOff)
	pe.timer = pe.pool.clock.AfterFunc(pe.pool.backoff.Delay(pe.attempts), pe.retry)
}

// retry is the backoff timer: dial again.
func (pe *Peer) retry() {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	pe.timer = nil
	if pe.closed || pe.state != BackingOff || pe.dialing {
		return
	}
	pe.startDialLocked()
}

// wake: gossip saw the peer alive.
func (pe *Peer) wake() {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	if pe.closed || (pe.state != Parked && pe.state != BackingOff) {
		return
	}
	if pe.timer != nil {
		pe.timer.Stop()
		pe.timer = nil
	}
	pe.attempts = 0
	if !pe.dialing {
		pe.startDialLocked()
	}
}

// park: gossip reported the peer dead or gone.
func (pe *Peer) park() {
	pe.mu.Lock()
	if pe.timer != nil {
		pe.timer.Stop()
		pe.timer = nil
	}
	conns := pe.conns
	pe.conns = nil
	pe.setStateLocked(Parked)
	pe.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// onConnClose runs on the event loop when one of the peer's connections
// closed (conn.Config.OnClose): an idle or graceful close leaves the peer
// idle until the next call; a broken connection is re-dialed at once.
//
// A connection not in pe.conns is ignored: dial counted it as a failed
// attempt (it closed before adoption), or park or close dropped it.
func (pe *Peer) onConnClose(c *conn.Conn) {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	i := slices.Index(pe.conns, c)
	if i < 0 {
		return
	}
	pe.conns = slices.Delete(pe.conns, i, i+1)
	if pe.closed || len(pe.conns) > 0 || pe.state == Parked {
		return
	}
	err := c.Err()
	if errors.Is(err, conn.ErrIdle) || errors.Is(err, conn.ErrGoAway) || errors.Is(err, conn.ErrClosed) {
		pe.setStateLocked(Idle)
		return
	}
	if !pe.dialing {
		pe.startDialLocked()
	}
}

func (pe *Peer) close() {
	pe.mu.Lock()
	pe.closed = true
	if pe.timer != nil {
		pe.timer.Stop()
		pe.timer = nil
	}
	conns := pe.conns
	pe.conns = nil
	pe.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
