package pool

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/conn"
)

// Peer is one remote node: a hawser.Caller whose calls go over one of its
// connections. Safe for concurrent use.
type Peer struct {
	// Immutable after Pool.Peer.
	pool *Pool
	addr string
	cfg  conn.Config // per peer: OnClose reports to this Peer

	mu       sync.Mutex // guards the fields below; see Pool for the lock order
	state    State
	conns    []peerConn // open when dial adopted them; removed by onConnClose, reapLocked, park, close
	dialing  bool
	dialDone chan struct{} // closed when the dial in progress ends
	// attempts counts failed attempts (failed dials, and connections that
	// broke before StableAfter) since a connection was stable or MarkAlive;
	// read it through settleLocked.
	attempts int
	lastErr  error // the last failed attempt's error; nil once a dial succeeds
	timer    Timer // the scheduled retry; set only while BackingOff, with no dial in progress
	closed   bool
	// picked counts, per connection, the calls that chose it and have not
	// returned from Call or OpenStream: a call registers on the connection
	// only after it released pe.mu, so without it a burst of callers all
	// see a connection below its limit, all choose it, and wait for its
	// slots without ever making pickLocked dial another.
	picked map[*conn.Conn]int
	// dedicated are the connections Dedicated dialed: never picked for
	// calls and outside the state machine, but closed by park and close.
	dedicated []*conn.Conn
}

// peerConn is an adopted connection and the pool Clock's time when its
// handshake completed.
type peerConn struct {
	c  *conn.Conn
	up time.Time
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
	State State
	Conns int
	// Attempts counts failed attempts since a connection was stable (open
	// Config.StableAfter) or MarkAlive: failed dials, and connections that
	// broke before StableAfter.
	Attempts int
	// LastErr is the last failed attempt's error (a dial error, or why a
	// connection broke early); nil once a dial succeeds.
	LastErr error
}

// Stats returns a snapshot.
func (pe *Peer) Stats() Stats {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	pe.settleLocked()
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
		pe.unpick(c)
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
		pe.unpick(c)
		if err != nil && attempt < maxGoAwayRetries && errors.Is(err, conn.ErrGoAway) {
			continue
		}
		return s, err
	}
}

// Dedicated dials a connection to the peer for the caller's use alone:
// Call, OpenStream and Conn never pick it, so what the caller sends on it
// (a raft pipeline or snapshot: bulk bytes already in the socket buffers,
// which no priority can overtake) never delays the calls on the shared
// connections (raft heartbeats). It is dialed like the others, with the
// pool's configuration, engine and Timeout, and it is closed by MarkDead
// and Close (its calls then fail); it closes itself after
// rpc-inactivity-timeout without calls, like the others. The caller may
// close it. A parked or backing-off peer fails at once with an error
// matching ErrPeerUnavailable; a failed dial is returned and does not count
// toward the peer's backoff.
func (pe *Peer) Dedicated(ctx context.Context) (*conn.Conn, error) {
	pe.mu.Lock()
	if pe.closed || pe.pool.isClosed() {
		pe.mu.Unlock()
		return nil, pe.closedError()
	}
	switch pe.state {
	case Parked, BackingOff:
		err := &UnavailableError{Addr: pe.addr, State: pe.state, Err: pe.lastErr}
		pe.mu.Unlock()
		return nil, err
	}
	if !pe.pool.addDial() {
		pe.mu.Unlock()
		return nil, pe.closedError()
	}
	pe.mu.Unlock()
	c, err := pe.dialDedicated(ctx)
	if err != nil {
		return nil, &hawser.TransportError{Op: "dial", Addr: pe.addr, Err: err}
	}
	pe.mu.Lock()
	if pe.closed || pe.pool.isClosed() || pe.state == Parked {
		pe.mu.Unlock()
		_ = c.Close() // its OnClose takes pe.mu: not under it
		return nil, pe.closedError()
	}
	pe.dedicated = append(pe.dedicated, c)
	pe.mu.Unlock()
	return c, nil
}

// dialDedicated dials one dedicated connection; Close aborts it and waits
// for it (the caller counted it in pool.dials).
func (pe *Peer) dialDedicated(ctx context.Context) (*conn.Conn, error) {
	defer pe.pool.dials.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(pe.pool.ctx, cancel)
	defer stop()
	cfg := pe.cfg
	cfg.OnClose = pe.onDedicatedClose
	return pe.pool.cfg.Dial(ctx, pe.pool.eng, pe.addr, &cfg)
}

func (pe *Peer) onDedicatedClose(c *conn.Conn) {
	pe.mu.Lock()
	pe.dedicated = slices.DeleteFunc(pe.dedicated, func(d *conn.Conn) bool { return d == c })
	pe.mu.Unlock()
}

// takeDedicatedLocked empties the dedicated list for closing outside pe.mu.
func (pe *Peer) takeDedicatedLocked() []*conn.Conn {
	d := pe.dedicated
	pe.dedicated = nil
	return d
}

// Conn returns one of the peer's open connections, dialing one if needed, as
// Call would pick it, for a sequence of calls that must share a connection:
// a pipeline whose replies are consumed in send order, or the chunks of one
// transfer. The pool still owns the connection and may close it (idle,
// MarkDead, Close); the caller must not close it, and sees its end through
// the calls' errors or Done. A parked or backing-off peer fails at once with
// an error matching ErrPeerUnavailable.
func (pe *Peer) Conn(ctx context.Context) (*conn.Conn, error) {
	c, err := pe.conn(ctx)
	if err != nil {
		return nil, err
	}
	pe.unpick(c)
	return c, nil
}

// conn returns a connection for a call: the least loaded one that is not
// draining, dialing when there is none. But while a connection younger
// than StableAfter is draining, it waits for that connection to close
// instead of dialing: the connection may be breaking (conn.Conn takes no
// calls once it is closing, before Done and OnClose), and the accounting
// of its close (closedLocked) decides whether to back off or dial, so a
// caller cannot dial around the backoff just before a break is counted.
// The cost: when a young connection drains after a GOAWAY and no other is
// open, callers wait for its calls in flight to finish.
func (pe *Peer) conn(ctx context.Context) (*conn.Conn, error) {
	pe.mu.Lock()
	for {
		if pe.closed || pe.pool.isClosed() {
			pe.mu.Unlock()
			return nil, pe.closedError()
		}
		pe.reapLocked()
		if c := pe.pickLocked(); c != nil {
			if pe.picked == nil {
				pe.picked = map[*conn.Conn]int{}
			}
			pe.picked[c]++
			pe.mu.Unlock()
			return c, nil
		}
		switch pe.state {
		case Parked, BackingOff:
			err := &UnavailableError{Addr: pe.addr, State: pe.state, Err: pe.lastErr}
			pe.mu.Unlock()
			return nil, err
		}
		var wait <-chan struct{}
		dialed := false
		if c := pe.youngDrainingLocked(); c != nil {
			wait = c.Done()
		} else {
			if !pe.dialing && !pe.startDialLocked() {
				pe.mu.Unlock()
				return nil, pe.closedError()
			}
			wait, dialed = pe.dialDone, true
		}
		pe.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-pe.pool.ctx.Done():
			return nil, pe.closedError()
		}
		pe.mu.Lock()
		if dialed && len(pe.conns) == 0 && pe.lastErr != nil && pe.state != Connecting {
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

// reapLocked drops and accounts for (closedLocked) the connections whose
// Done is closed. conn.Conn closes Done before it calls OnClose, so a
// caller may see a closed connection before onConnClose runs; whichever
// sees it first under pe.mu accounts for it, once.
func (pe *Peer) reapLocked() {
	for i := 0; i < len(pe.conns); {
		pc := pe.conns[i]
		select {
		case <-pc.c.Done():
			pe.conns = slices.Delete(pe.conns, i, i+1)
			pe.closedLocked(pc)
		default:
			i++
		}
	}
}

// youngDrainingLocked returns a connection younger than StableAfter that
// takes no new calls (it is closing, or going away after a GOAWAY), or
// nil.
func (pe *Peer) youngDrainingLocked() *conn.Conn {
	now := pe.pool.clock.Now()
	for _, pc := range pe.conns {
		if now.Sub(pc.up) < pe.pool.cfg.StableAfter && pc.c.Draining() {
			return pc.c
		}
	}
	return nil
}

// pickLocked returns the least loaded open connection, starting another
// dial when all have the acceptor's limit of calls in flight.
func (pe *Peer) pickLocked() *conn.Conn {
	var best *conn.Conn
	bestLoad := 0
	for _, pc := range pe.conns {
		c := pc.c
		if c.Draining() {
			continue
		}
		if load := max(c.InFlight(), pe.picked[c]); best == nil || load < bestLoad {
			best, bestLoad = c, load
		}
	}
	if best != nil && bestLoad >= best.MaxCalls() && len(pe.conns) < pe.pool.cfg.MaxConnsPerPeer && !pe.dialing {
		pe.startDialLocked()
	}
	return best
}

// unpick ends a call's choice of c (see Peer.picked).
func (pe *Peer) unpick(c *conn.Conn) {
	pe.mu.Lock()
	if pe.picked[c]--; pe.picked[c] <= 0 {
		delete(pe.picked, c)
	}
	pe.mu.Unlock()
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
	if err != nil {
		pe.failedLocked(err)
		return
	}
	// attempts stays: the connection succeeds only once it is stable
	// (settleLocked, onConnClose).
	pe.conns = append(pe.conns, peerConn{c: c, up: pe.pool.clock.Now()})
	pe.lastErr = nil
	pe.setStateLocked(Up)
}

// failedLocked counts a failed attempt: a dial that failed, or a
// connection that broke before it was stable. With another connection
// open the peer stays Up; after RetriesMax attempts it is parked; with a
// dial in progress, that dial is the retry; otherwise it backs off and a
// timer dials again.
func (pe *Peer) failedLocked(err error) {
	pe.settleLocked()
	pe.attempts++
	pe.lastErr = err
	pe.pool.log.Debug("hawser: attempt failed", "peer", pe.addr, "attempt", pe.attempts, "err", err)
	switch {
	case len(pe.conns) > 0:
		// An extra connection failed; the peer stays Up.
	case pe.attempts >= pe.pool.cfg.RetriesMax:
		pe.setStateLocked(Parked)
	case pe.dialing:
		pe.setStateLocked(Connecting)
	default:
		pe.setStateLocked(BackingOff)
		pe.timer = pe.pool.clock.AfterFunc(pe.pool.backoff.Delay(pe.attempts), pe.retry)
	}
}

// settleLocked forgets the failed attempts once a connection has been open
// StableAfter: it is the success that ends a run of failures.
func (pe *Peer) settleLocked() {
	now := pe.pool.clock.Now()
	for _, pc := range pe.conns {
		if now.Sub(pc.up) >= pe.pool.cfg.StableAfter {
			pe.attempts = 0
			return
		}
	}
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
	dedicated := pe.takeDedicatedLocked()
	pe.setStateLocked(Parked)
	pe.mu.Unlock()
	for _, pc := range conns {
		_ = pc.c.Close() // its OnClose takes pe.mu: not under it
	}
	for _, c := range dedicated {
		_ = c.Close()
	}
}

// onConnClose runs on the event loop when one of the peer's connections
// closed (conn.Config.OnClose): see closedLocked.
//
// A connection not in pe.conns is ignored: dial counted it as a failed
// attempt (it closed before adoption), a caller reaped it (reapLocked), or
// park or close dropped it.
func (pe *Peer) onConnClose(c *conn.Conn) {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	i := slices.IndexFunc(pe.conns, func(pc peerConn) bool { return pc.c == c })
	if i < 0 {
		return
	}
	pc := pe.conns[i]
	pe.conns = slices.Delete(pe.conns, i, i+1)
	pe.closedLocked(pc)
}

// closedLocked accounts for an adopted connection that closed, just
// removed from pe.conns. The rule:
//   - an idle close, a GOAWAY or a local close is not a failure: the last
//     connection leaves the peer idle until the next call;
//   - a connection that broke (any other error) within StableAfter of its
//     handshake is a failed attempt (failedLocked): the peer backs off, or
//     is parked after RetriesMax, exactly as after a failed dial;
//   - one that broke after StableAfter resets the attempts and, if it was
//     the last, is re-dialed at once.
func (pe *Peer) closedLocked(pc peerConn) {
	if pe.closed || pe.state == Parked {
		return
	}
	stable := pe.pool.clock.Now().Sub(pc.up) >= pe.pool.cfg.StableAfter
	if stable {
		pe.attempts = 0
	}
	err := pc.c.Err()
	switch {
	case errors.Is(err, conn.ErrIdle) || errors.Is(err, conn.ErrGoAway) || errors.Is(err, conn.ErrClosed):
		if len(pe.conns) == 0 {
			pe.idleLocked()
		}
	case !stable:
		pe.failedLocked(err)
	case len(pe.conns) > 0:
		// The other connections carry the calls.
	case pe.dialing:
		pe.setStateLocked(Connecting)
	default:
		pe.startDialLocked()
	}
}

// idleLocked is the state with no connection and no failure: Connecting if
// a dial is in progress, else Idle.
func (pe *Peer) idleLocked() {
	if pe.dialing {
		pe.setStateLocked(Connecting)
		return
	}
	pe.setStateLocked(Idle)
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
	dedicated := pe.takeDedicatedLocked()
	pe.mu.Unlock()
	for _, pc := range conns {
		_ = pc.c.Close()
	}
	for _, c := range dedicated {
		_ = c.Close()
	}
}
