package conn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
)

// Conn is one authenticated, multiplexed hawser connection on an event loop.
// A dialed Conn makes calls and opens streams; an accepted Conn serves them
// through its Router. All methods are safe for concurrent use.
//
// Lock order: Conn.mu, then writeQueue.mu, then a stream's mu. Nothing is
// held across a gnet call that can close the connection (Writev), because
// gnet runs OnClose re-entrantly inside it.
type Conn struct {
	// Immutable after the handshake.
	cfg      *Config
	peer     *peerInfo
	dialer   bool
	remote   string
	local    string
	tc       *tls.Conn // nil with InsecurePlaintext
	tr       *transport
	eng      *Engine
	compress bool // both sides announced codec.FeatureS2
	fragSize int  // largest payload put in one frame toward the peer

	// Set by onOpen on the loop before the Conn is shared.
	gc   gnet.Conn
	loop gnet.EventLoop

	// Owned by the event loop.
	rbuf       *[]byte // received plaintext; nil when empty
	roff       int
	rlen       int
	asm        map[uint32]*assembly // messages being reassembled
	asmBytes   int
	batch      chunks // plaintext taken from the queue by a flush
	lastStream *call  // dialer: the stream the last STREAM_ITEM went to
	iov        [][]byte
	dead       bool // onClose ran

	wq writeQueue

	mu        sync.Mutex
	pending   map[uint32]*call       // dialer: calls and streams awaiting frames
	nextID    uint32                 // dialer: next call ID (odd)
	slotWait  chan struct{}          // dialer: closed when a call slot frees
	inflight  map[uint32]*serverCall // acceptor: calls and streams being served
	streams   int                    // streams in pending (dialer) or inflight (acceptor)
	ordered   []*serverCall          // acceptor: ModeOrdered calls waiting
	ordering  bool                   // acceptor: the ordered goroutine runs
	goingAway bool                   // a GOAWAY was sent or received
	lastID    uint32                 // acceptor: highest call ID received; dialer: the peer's GOAWAY Arg
	activity  uint64                 // bumped when a call starts or ends
	closeErr  error                  // why the connection closed; first wins
	drained   chan struct{}          // closed when nothing is in flight and goingAway

	closed     chan struct{} // closed when onClose has failed everything
	closing    atomic.Bool
	lastRecv   atomic.Int64 // unix nanos of the last bytes received
	pingSent   atomic.Int64 // unix nanos of the outstanding PING, or 0
	timer      *time.Timer  // keepalive and inactivity; guarded by mu
	idleSince  time.Time    // guarded by mu
	seenAct    uint64       // guarded by mu
	drainArm   atomic.Bool
	drainTimer *time.Timer    // see armDrain
	handlers   sync.WaitGroup // acceptor: ordered and stream goroutines
}

func newConn(cfg *Config, eng *Engine, h *handshake, pi *peerInfo, dialer bool) *Conn {
	c := &Conn{
		cfg:    cfg,
		peer:   pi,
		dialer: dialer,
		remote: h.nc.RemoteAddr().String(),
		local:  h.nc.LocalAddr().String(),
		tc:     h.tc,
		tr:     h.tr,
		eng:    eng,
		closed: make(chan struct{}),
		nextID: 1,
	}
	c.compress = pi.features&codec.FeatureS2 != 0
	// A first fragment also carries the call prefix (at most 10 bytes plus
	// the metadata block); keep every frame within the peer's limit.
	c.fragSize = min(codec.DefaultFragmentSize, int(pi.maxFrame)-codec.CallPrefixSize-2-codec.MaxMetadataSize)
	c.wq.hwm = cfg.WriteHighWater
	if dialer {
		c.pending = make(map[uint32]*call)
	} else {
		c.inflight = make(map[uint32]*serverCall)
	}
	c.lastRecv.Store(time.Now().UnixNano())
	return c
}

// Dial connects to addr, runs TLS and the authenticated handshake, and
// enrolls the connection on e. ctx and cfg.Timeout (rpc-timeout) bound the
// whole of it. Errors are *hawser.TransportError; the cause matches ErrAuth,
// ErrVersionMismatch, a *tls.CertificateVerificationError, or the socket
// error.
func Dial(ctx context.Context, e *Engine, addr string, cfg *Config) (*Conn, error) {
	rc, err := cfg.resolved(true)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, rc.Timeout)
	defer cancel()
	d := net.Dialer{Control: rc.socketControl}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &hawser.TransportError{Op: "dial", Addr: addr, Err: err}
	}
	h, pi, err := dialHandshake(ctx, rc, nc)
	if err != nil {
		_ = nc.Close()
		return nil, &hawser.TransportError{Op: "handshake", Addr: addr, Err: timeoutCause(ctx, err)}
	}
	c := newConn(rc, e, h, pi, true)
	if err := c.enroll(nc); err != nil {
		return nil, &hawser.TransportError{Op: "dial", Addr: addr, Err: err}
	}
	return c, nil
}

// Accept runs the acceptor's side of the handshake on nc, then enrolls the
// connection on e, where cfg.Router serves its calls. ctx and cfg.Timeout
// bound the handshake; a peer that stays silent is closed at that bound.
// On error nc is closed.
func Accept(ctx context.Context, e *Engine, nc net.Conn, cfg *Config) (*Conn, error) {
	rc, err := cfg.resolved(false)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, rc.Timeout)
	defer cancel()
	if tc, ok := nc.(*net.TCPConn); ok && rc.SocketBuffer > 0 {
		_ = tc.SetReadBuffer(rc.SocketBuffer)
		_ = tc.SetWriteBuffer(rc.SocketBuffer)
	}
	h, pi, err := acceptHandshake(ctx, rc, nc)
	if err != nil {
		_ = nc.Close()
		return nil, &hawser.TransportError{Op: "handshake", Addr: nc.RemoteAddr().String(), Err: timeoutCause(ctx, err)}
	}
	c := newConn(rc, e, h, pi, false)
	if err := c.enroll(nc); err != nil {
		return nil, &hawser.TransportError{Op: "accept", Addr: c.remote, Err: err}
	}
	return c, nil
}

// timeoutCause makes a socket timeout caused by the rpc-timeout deadline
// match context.DeadlineExceeded too.
func timeoutCause(ctx context.Context, err error) error {
	d, ok := ctx.Deadline()
	if ok && !time.Now().Before(d) && !errors.Is(err, context.DeadlineExceeded) && isTimeout(err) {
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// enroll switches the transport to loop mode and hands the socket to the
// engine; gnet dups the descriptor and closes nc.
func (c *Conn) enroll(nc net.Conn) error {
	c.tr.nc = nil
	if err := c.eng.enroll(nc, c); err != nil {
		_ = nc.Close()
		return err
	}
	c.startTimer()
	return nil
}

// onOpen runs on the loop when the connection is registered. Bytes the TLS
// layer already holds (calls pipelined behind the handshake) are parsed at
// once: no socket event will announce them.
func (c *Conn) onOpen(gc gnet.Conn) gnet.Action {
	c.gc = gc
	c.loop = gc.EventLoop()
	c.tr.gc = gc
	return c.onTraffic()
}

// Run implements gnet.Runnable: the flush task queued by scheduleFlush.
func (c *Conn) Run(context.Context) error {
	c.flush()
	return nil
}

// RemoteAddr and LocalAddr are the socket addresses.
func (c *Conn) RemoteAddr() string { return c.remote }
func (c *Conn) LocalAddr() string  { return c.local }

// PeerNodeID and PeerAppVersion are what the peer announced in its HELLO.
func (c *Conn) PeerNodeID() string     { return c.peer.nodeID }
func (c *Conn) PeerAppVersion() string { return c.peer.appVersion }

// Version is the negotiated protocol version.
func (c *Conn) Version() uint16 { return c.peer.version }

// MaxCalls is the number of calls the acceptor allows in flight on this
// connection (from its HELLO_ACK); a dialer's calls beyond it wait.
func (c *Conn) MaxCalls() int { return int(c.peer.maxCalls) }

// Serves reports whether the acceptor listed method in its HELLO_ACK.
func (c *Conn) Serves(method uint64) bool {
	_, ok := c.peer.methods[method]
	return ok
}

// Done is closed when the connection has closed and every pending call and
// stream has failed.
func (c *Conn) Done() <-chan struct{} { return c.closed }

// Err returns why the connection closed, or nil while it is open.
func (c *Conn) Err() error {
	select {
	case <-c.closed:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.closeErr
	default:
		return nil
	}
}

// InFlight is the number of calls and streams in flight.
func (c *Conn) InFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dialer {
		return len(c.pending)
	}
	return len(c.inflight)
}

// Draining reports whether the connection takes no new calls (a GOAWAY was
// sent or received, or it is closing).
func (c *Conn) Draining() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.goingAway || c.closeErr != nil
}

// Close closes the connection at once: pending calls and streams fail with a
// transport error whose cause is ErrClosed. It waits until they have.
func (c *Conn) Close() error {
	c.closeWith(ErrClosed, codec.CodeOK)
	<-c.closed
	return nil
}

// Shutdown closes gracefully: it sends GOAWAY, lets calls and streams in
// flight finish (new calls fail with ErrGoAway, so a pool sends them
// elsewhere), then closes. If ctx ends first, it closes at once and returns
// ctx.Err().
func (c *Conn) Shutdown(ctx context.Context) error {
	drained := c.goAway(codec.CodeOK)
	select {
	case <-drained:
		c.closeWith(ErrClosed, codec.CodeOK)
		<-c.closed
		return nil
	case <-c.closed:
		return nil
	case <-ctx.Done():
		c.closeWith(ErrClosed, codec.CodeShutdown)
		<-c.closed
		return ctx.Err()
	}
}

// goAway marks the connection draining and sends GOAWAY once. It returns a
// channel closed when nothing is in flight any more.
func (c *Conn) goAway(code codec.Code) <-chan struct{} {
	c.mu.Lock()
	first := !c.goingAway
	c.goingAway = true
	if c.drained == nil {
		c.drained = make(chan struct{})
	}
	d := c.drained
	c.checkDrainedLocked()
	last := c.lastID
	if c.dialer {
		last = 0
	}
	c.mu.Unlock()
	if first {
		c.queueControl(codec.Header{Kind: codec.KindGoAway, Code: code, Arg: last}, false)
	}
	return d
}

// checkDrainedLocked closes c.drained once nothing is in flight.
func (c *Conn) checkDrainedLocked() {
	if c.drained == nil || !c.goingAway {
		return
	}
	if len(c.pending) == 0 && len(c.inflight) == 0 {
		select {
		case <-c.drained:
		default:
			close(c.drained)
		}
	}
}

// closeWith closes the connection with cause err. With a code other than
// CodeOK, a GOAWAY carrying it is flushed first. The first cause wins. It
// does not wait.
func (c *Conn) closeWith(err error, code codec.Code) {
	c.mu.Lock()
	if c.closeErr == nil {
		c.closeErr = err
	}
	c.mu.Unlock()
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	if c.loop == nil {
		return
	}
	task := func(context.Context) error {
		if c.dead {
			return nil
		}
		if code != codec.CodeOK {
			c.queueGoAwayError(code, err)
		}
		c.flush()
		if !c.dead {
			_ = c.loop.Close(c.gc)
		}
		return nil
	}
	if e := c.loop.Execute(context.Background(), gnet.RunnableFunc(task)); e != nil {
		// The loop is gone; it closed (or will close) every connection.
		_ = c.gc.Close()
	}
}

// failLoop closes the connection from the loop because of err (a protocol
// violation, a TLS or socket error): the caller returns gnet.Close.
func (c *Conn) failLoop(err error, code codec.Code) gnet.Action {
	c.mu.Lock()
	if c.closeErr == nil {
		c.closeErr = err
	}
	c.mu.Unlock()
	c.closing.Store(true)
	if code != codec.CodeOK {
		c.queueGoAwayError(code, err)
		c.flush()
	}
	c.report(err)
	c.cfg.Logger.Debug("hawser: closing connection", "remote", c.remote, "err", err)
	return gnet.Close
}

// report passes an error that closes the connection to Config.OnError,
// unless it is an ordinary close by the peer.
func (c *Conn) report(err error) {
	if c.cfg.OnError == nil {
		return
	}
	if errors.Is(err, ErrPeerClosed) && !errors.Is(err, ErrTruncated) {
		return
	}
	c.cfg.OnError(c.remote, err)
}

func (c *Conn) queueGoAwayError(code codec.Code, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	body := codec.AppendErrorBody(nil, "", msg)
	c.mu.Lock()
	last := c.lastID // acceptor: the last call it accepted
	if c.dialer {
		last = 0
	}
	c.mu.Unlock()
	_ = c.queueFrame(codec.Header{Kind: codec.KindGoAway, Code: code, Arg: last}, body, nil, true, true)
}

// onClose runs on the loop when the connection has closed, for any reason:
// it fails every pending call and stream and releases the buffers.
func (c *Conn) onClose(gerr error) {
	if c.dead {
		return
	}
	c.dead = true
	c.mu.Lock()
	if c.closeErr == nil {
		if gerr == nil {
			c.closeErr = ErrClosed
		} else {
			c.closeErr = c.readError(gerr)
			c.mu.Unlock()
			c.report(c.closeErr)
			c.mu.Lock()
		}
	}
	cause := c.closeErr
	pending := c.pending
	c.pending = nil
	// Cancel handlers under c.mu: a handler returning now releases its
	// serverCall (finish) only after taking c.mu, so none is recycled while
	// this loop still holds it.
	for _, sc := range c.inflight {
		sc.ctx.cancel(cause)
	}
	c.inflight = nil
	c.ordered = nil
	if c.slotWait != nil {
		close(c.slotWait)
		c.slotWait = nil
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()

	terr := &hawser.TransportError{Op: "call", Addr: c.remote, Err: cause}
	for _, cl := range pending {
		cl.fail(terr)
	}
	c.wq.close(terr)
	if c.rbuf != nil {
		putReadBuf(c.rbuf)
		c.rbuf = nil
	}
	c.asm = nil
	c.lastStream = nil
	c.batch.release()
	c.tr.out.release()
	if c.drainTimer != nil {
		c.drainTimer.Stop()
	}
	close(c.closed)
	if c.cfg.OnClose != nil {
		c.cfg.OnClose(c)
	}
}

// startTimer arms the keepalive and inactivity timer.
func (c *Conn) startTimer() {
	d := c.tickInterval()
	if d <= 0 {
		return
	}
	c.mu.Lock()
	c.idleSince = time.Now()
	if c.closeErr == nil {
		c.timer = time.AfterFunc(d, c.tick)
	}
	c.mu.Unlock()
}

// tickInterval is how often tick runs: often enough to close an idle
// connection within a quarter of its timeout and to ping on time.
func (c *Conn) tickInterval() time.Duration {
	d := time.Duration(0)
	if c.cfg.KeepaliveInterval > 0 {
		d = c.cfg.KeepaliveInterval / 2
	}
	if it := c.cfg.InactivityTimeout; it > 0 && (d == 0 || it/4 < d) {
		d = it / 4
	}
	if d > 0 && d < 5*time.Millisecond {
		d = 5 * time.Millisecond
	}
	return d
}

// tick runs on a timer goroutine: keepalive and inactivity (PROTOCOL.md §8).
func (c *Conn) tick() {
	now := time.Now()
	if ka := c.cfg.KeepaliveInterval; ka > 0 {
		last := time.Unix(0, c.lastRecv.Load())
		if sent := c.pingSent.Load(); sent != 0 && last.UnixNano() < sent {
			if now.Sub(time.Unix(0, sent)) >= c.cfg.KeepaliveTimeout {
				c.closeWith(ErrKeepalive, codec.CodeKeepalive)
				if c.cfg.OnError != nil {
					c.cfg.OnError(c.remote, ErrKeepalive)
				}
				return
			}
		} else if now.Sub(last) >= ka {
			c.pingSent.Store(now.UnixNano())
			c.queueControl(codec.Header{Kind: codec.KindPing, Arg: uint32(now.UnixNano())}, false)
		}
	}
	c.mu.Lock()
	if c.closeErr != nil {
		c.mu.Unlock()
		return
	}
	if it := c.cfg.InactivityTimeout; it > 0 {
		busy := len(c.pending) > 0 || len(c.inflight) > 0
		if busy || c.activity != c.seenAct {
			c.seenAct = c.activity
			c.idleSince = now
		} else if now.Sub(c.idleSince) >= it {
			// Nothing in flight: no new call may start here (goingAway);
			// the GOAWAY tells the peer which calls it sent were not seen.
			c.goingAway = true
			c.mu.Unlock()
			c.closeWith(ErrIdle, codec.CodeIdle)
			return
		}
	}
	c.timer.Reset(c.tickInterval())
	c.mu.Unlock()
}
