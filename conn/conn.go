package conn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
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
	compress bool         // both sides announced codec.FeatureS2
	fragSize int          // largest payload put in one frame toward the peer
	log      *slog.Logger // cfg.Logger, with the user of a client RPC session

	// Set by onOpen on the loop before the Conn is shared.
	gc sock

	// Owned by the event loop.
	rbuf       *[]byte // received plaintext; nil when empty
	roff       int
	rlen       int
	asm        map[uint32]*assembly // messages being reassembled
	asmBytes   int
	batch      chunks // the writer's: plaintext taken from the queue
	wout       chunks // the writer's: ciphertext not written yet
	lastStream *call  // dialer: the stream the last STREAM_ITEM went to
	iov        [][]byte
	dead       bool // onClose ran
	loopOver   bool // the frame being handled made the loop queue output at twice the mark
	paused     bool // input is not read until the output drains (§9)
	resumed    bool // a flush lifted the pause: read what waits
	lingering  bool // a graceful close: flush all, FIN, wait for the peer
	finSent    bool // the write side is shut down: nothing more is written
	lastHeld   int  // gnet's outbound bytes after the last flush

	wq writeQueue

	mu          sync.Mutex
	pending     map[uint32]*call       // dialer: calls and streams awaiting frames
	nextID      uint32                 // dialer: next call ID (odd)
	slotWait    chan struct{}          // dialer: closed when a call slot frees
	inflight    map[uint32]*serverCall // acceptor: calls and streams being served
	streams     int                    // dialer: streams in pending
	ordered     []*serverCall          // acceptor: ModeOrdered calls waiting
	poolQueue   []*serverCall          // acceptor: ModePool calls waiting for the connection's PoolShare
	poolHead    int                    // acceptor: next in poolQueue
	poolRunning int                    // acceptor: ModePool calls of this connection on the Router's pool
	ordering    bool                   // acceptor: the ordered goroutine runs
	goingAway   bool                   // a GOAWAY was sent or received
	sentGoAway  bool                   // this side's GOAWAY is queued
	lastID      uint32                 // acceptor: highest call ID admitted; dialer: the peer's GOAWAY Arg
	acceptMax   uint32                 // acceptor, going away: the highest call ID still admitted
	activity    uint64                 // bumped when a call starts or ends
	closeErr    error                  // why the connection closed; first wins
	drained     chan struct{}          // closed when nothing is in flight and goingAway
	peerAway    bool                   // the peer's GOAWAY arrived (away.go)
	away        chan struct{}          // GoingAway's channel, made when first asked for

	callSlots    atomic.Int32  // acceptor: calls in inflight holding a MaxCalls slot
	npending     atomic.Int32  // dialer: len(pending), set under mu
	directWrites atomic.Int64  // writes done by a direct writer (tests)
	directLeft   atomic.Int64  // of which the socket did not take everything
	streamSlots  atomic.Int32  // acceptor: streams among them holding a MaxStreams slot
	closed       chan struct{} // closed when onClose has failed everything
	closing      atomic.Bool   // a close (graceful or not) has started
	hardClosing  atomic.Bool   // an immediate close has been queued
	drainWatch   atomic.Bool   // c.drained exists: flushes check for the drain
	lastRecv     atomic.Int64  // unix nanos of the last bytes received
	pingSent     atomic.Int64  // unix nanos of the outstanding PING, or 0
	stallSince   atomic.Int64  // unix nanos since gnet's buffer stopped shrinking, or 0
	timer        *time.Timer   // keepalive, inactivity and stall; guarded by mu
	idleSince    time.Time     // guarded by mu
	seenAct      uint64        // guarded by mu
	drainArm     atomic.Bool
	drainTimer   *time.Timer    // see armDrain
	lingerTimer  *time.Timer    // bounds a graceful close; set on the loop
	handlers     sync.WaitGroup // acceptor: ordered and stream goroutines
	idle         idleState      // buffers released while quiet (idle.go)
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
	c.log = cfg.Logger
	if pi.user != "" {
		c.log = c.log.With("user", pi.user)
	}
	c.compress = pi.features&codec.FeatureS2 != 0
	// A first fragment also carries the call prefix (at most 10 bytes plus
	// the metadata block); keep every frame within the peer's limit.
	c.fragSize = min(codec.DefaultFragmentSize, int(pi.maxFrame)-codec.CallPrefixSize-2-codec.MaxMetadataSize)
	c.wq.hwm = cfg.WriteHighWater
	c.wq.directOff = cfg.LoopWrites
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
// error. A TLS session cache in cfg.TLS (ClientTLS has one) is used per
// addr, so a redial to addr resumes.
func Dial(ctx context.Context, e *Engine, addr string, cfg *Config) (*Conn, error) {
	rc, err := cfg.resolved(true)
	if err != nil {
		return nil, err
	}
	if rc.TLS != nil && rc.TLS.ClientSessionCache != nil {
		// rc.TLS may be the caller's, shared: key the cache on a clone.
		t := rc.TLS.Clone()
		t.ClientSessionCache = addrSessionCache{addr: addr, cache: rc.TLS.ClientSessionCache}
		rc.TLS = t
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
	tcp, ok := nc.(*net.TCPConn)
	poll := rc.DialRead == DialReadPoller || (rc.DialRead == DialReadAuto && runtime.GOMAXPROCS(0) == 1)
	if !poll || !ok {
		err = c.enroll(nc)
	} else {
		err = c.startPoll(tcp)
	}
	if err != nil {
		return nil, &hawser.TransportError{Op: "dial", Addr: addr, Err: err}
	}
	return c, nil
}

// startPoll runs a dialed connection on a pollSock instead of a loop.
func (c *Conn) startPoll(nc *net.TCPConn) error {
	c.tr.nc = nil
	_ = nc.SetDeadline(time.Time{})
	p, err := newPollSock(c, nc)
	if err == nil {
		err = c.eng.register(p)
	}
	if err != nil {
		_ = nc.Close()
		return err
	}
	p.start()
	c.startTimer()
	return nil
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
	return c.onOpenSock(&gnetSock{Conn: gc, loop: gc.EventLoop()})
}

// onOpenSock is onOpen for either kind of socket.
func (c *Conn) onOpenSock(s sock) gnet.Action {
	c.gc = s
	c.tr.gc = s
	c.wq.mu.Lock()
	c.wq.fd = s.Fd()
	c.wq.mu.Unlock()
	return c.onTraffic()
}

// Run implements gnet.Runnable: the flush task queued by scheduleFlush
// (and the drain timer). When the flush lifts a pause on input, the input
// that waited in gnet's buffer is handled now: no socket event may come
// for it.
func (c *Conn) Run(context.Context) error {
	c.flush()
	if c.resumed && !c.dead {
		c.resumed = false
		if c.service() == gnet.Close && !c.dead {
			_ = c.gc.CloseLoop()
		}
	}
	return nil
}

// RemoteAddr and LocalAddr are the socket addresses.
func (c *Conn) RemoteAddr() string { return c.remote }
func (c *Conn) LocalAddr() string  { return c.local }

// PeerNodeID and PeerAppVersion are what the peer announced in its HELLO.
func (c *Conn) PeerNodeID() string     { return c.peer.nodeID }
func (c *Conn) PeerAppVersion() string { return c.peer.appVersion }

// PeerPlatformVersion is the application version the acceptor announced
// (Config.PlatformVersion); 0 if it announced none or on an accepted
// connection.
func (c *Conn) PeerPlatformVersion() uint32 { return c.peer.platform }

// User is the username the dialer logged in as on a client RPC acceptor
// (Config.Authenticate), or "".
func (c *Conn) User() string { return c.peer.user }

// Session is what Config.Authenticate returned for this connection, or nil.
func (c *Conn) Session() any { return c.peer.session }

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
// transport error whose cause is ErrClosed. It waits until they have. It
// does not wait for handlers (their contexts are cancelled); Wait does.
func (c *Conn) Close() error {
	c.closeWith(ErrClosed, codec.CodeOK)
	<-c.closed
	return nil
}

// Kick closes the connection at once because of err, and tells the peer
// why: a GOAWAY carries err's code, registered name and message
// (hawser.WireError), so the peer's calls and streams fail with a
// *PeerError that matches err's registered sentinel (errors.Is). The
// first cause wins. It does not wait.
func (c *Conn) Kick(err error) {
	code, _, _ := hawser.WireError(err)
	if code == codec.CodeOK {
		code = codec.CodeUnknown
	}
	c.closeWith(err, code)
}

// Shutdown closes gracefully: it sends GOAWAY, lets calls and streams in
// flight finish (new calls fail with ErrGoAway, so a pool sends them
// elsewhere) and their outcomes reach the socket, then shuts down the write
// side and waits (at most Timeout) for the peer to close. If ctx ends first,
// it closes at once and returns ctx.Err().
func (c *Conn) Shutdown(ctx context.Context) error {
	drained := c.goAway()
	select {
	case <-drained:
		c.closeGraceful(ErrClosed, codec.CodeOK)
	case <-c.closed:
		return nil
	case <-ctx.Done():
		c.closeWith(ErrClosed, codec.CodeShutdown)
		<-c.closed
		return ctx.Err()
	}
	select {
	case <-c.closed:
		return nil
	case <-ctx.Done():
		c.closeWith(ErrClosed, codec.CodeOK)
		<-c.closed
		return ctx.Err()
	}
}

// goAway marks the connection draining and queues this side's GOAWAY once.
// It returns a channel closed when nothing is in flight any more and every
// outcome has been written to the socket.
func (c *Conn) goAway() <-chan struct{} {
	c.mu.Lock()
	trigger := c.sendGoAwayLocked(codec.CodeOK, "")
	if c.drained == nil {
		c.drained = make(chan struct{})
	}
	c.drainWatch.Store(true)
	d := c.drained
	c.checkDrainedLocked()
	c.mu.Unlock()
	if trigger {
		c.scheduleFlush()
	}
	return d
}

// sendGoAwayLocked marks the connection going away and queues this side's
// GOAWAY once, with code (and, unless it is CodeOK, an error body with
// msg); c.mu is held. Both under c.mu, where onCall reads goingAway: an
// ERROR Unavailable that the GOAWAY causes always follows it (§7). It
// reports whether the caller must schedule a flush (not on the loop).
func (c *Conn) sendGoAwayLocked(code codec.Code, msg string) (trigger bool) {
	c.goingAway = true
	if c.sentGoAway {
		return false
	}
	c.sentGoAway = true
	if !c.dialer {
		c.acceptMax = max(c.acceptMax, c.lastID)
	}
	var body []byte
	if code != codec.CodeOK {
		body = codec.AppendErrorBody(nil, "", msg)
	}
	c.wq.mu.Lock()
	defer c.wq.mu.Unlock()
	if c.wq.err != nil {
		return false
	}
	c.writeFrameLocked(codec.Header{Kind: codec.KindGoAway, Code: code, Arg: c.goAwayArgLocked()}, body, nil, true)
	return c.triggerLocked(false)
}

// goAwayArgLocked is the Arg of this side's GOAWAY (§7): on the acceptor
// the highest call ID it still takes; on the dialer the highest ID it has
// started a call with, which the acceptor takes even when the CALL arrives
// after the GOAWAY.
func (c *Conn) goAwayArgLocked() uint32 {
	if !c.dialer {
		if c.goingAway {
			return c.acceptMax
		}
		return c.lastID
	}
	if c.nextID > 1 {
		return c.nextID - 2
	}
	return 0
}

// checkDrainedLocked closes c.drained once nothing is in flight and nothing
// waits to be written, here or in gnet; c.mu is held. flush calls it too,
// as the output drains.
func (c *Conn) checkDrainedLocked() {
	if c.drained == nil || !c.goingAway || len(c.pending) > 0 || len(c.inflight) > 0 {
		return
	}
	select {
	case <-c.drained:
		return
	default:
	}
	c.wq.mu.Lock()
	idle := c.wq.idleLocked()
	c.wq.mu.Unlock()
	if idle {
		close(c.drained)
	}
}

// closeWith closes the connection at once with cause err. With a code other
// than CodeOK, a GOAWAY carrying it is flushed first (best effort: what gnet
// cannot write at once is dropped). The first cause wins. It does not wait.
func (c *Conn) closeWith(err error, code codec.Code) {
	c.setCloseErr(err)
	c.closing.Store(true)
	if !c.hardClosing.CompareAndSwap(false, true) {
		return
	}
	c.onLoop(func() {
		if code != codec.CodeOK {
			c.queueGoAwayError(code, err)
		}
		c.flush()
		if !c.dead {
			_ = c.gc.CloseLoop()
		}
	})
}

// closeGraceful closes the connection without losing what is queued: with
// a code other than CodeOK it queues a GOAWAY carrying it, writes
// everything, shuts down the write side once gnet holds nothing, and closes
// when the peer does, or after Timeout. Input is dropped meanwhile.
func (c *Conn) closeGraceful(err error, code codec.Code) {
	c.setCloseErr(err)
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	c.onLoop(func() {
		if code != codec.CodeOK {
			c.queueGoAwayError(code, err)
		}
		c.lingering = true
		c.paused = false
		c.lingerTimer = time.AfterFunc(c.cfg.Timeout, func() { c.closeWith(err, codec.CodeOK) })
		c.flush()
	})
}

func (c *Conn) setCloseErr(err error) {
	c.mu.Lock()
	if c.closeErr == nil {
		c.closeErr = err
	}
	c.mu.Unlock()
}

// onLoop runs f on the loop unless the connection is dead by then.
func (c *Conn) onLoop(f func()) {
	task := func(context.Context) error {
		if !c.dead {
			f()
		}
		return nil
	}
	if e := c.gc.Execute(context.Background(), gnet.RunnableFunc(task)); e != nil {
		// The loop is gone; it closed (or will close) every connection.
		_ = c.gc.Close()
	}
}

// failLoop closes the connection from the loop because of err (a protocol
// violation, a TLS or socket error): the caller returns gnet.Close.
func (c *Conn) failLoop(err error, code codec.Code) gnet.Action {
	c.setCloseErr(err)
	c.closing.Store(true)
	if code != codec.CodeOK {
		c.queueGoAwayError(code, err)
		c.flush()
	}
	c.report(err)
	c.log.Debug("hawser: closing connection", "remote", c.remote, "err", err)
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
	msg, name := "", ""
	if err != nil {
		msg = err.Error()
		if wc, wn, _ := hawser.WireError(err); wc == code {
			name = wn // a registered error (Kick) travels by name
		}
	}
	body := codec.AppendErrorBody(nil, name, msg)
	c.mu.Lock()
	last := c.goAwayArgLocked()
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
	c.npending.Store(0)
	// Cancel handlers under c.mu: a handler returning now releases its
	// serverCall (finish) only after taking c.mu, so none is recycled while
	// this loop still holds it.
	for _, sc := range c.inflight {
		sc.ctx.cancel(cause)
	}
	c.inflight = nil
	c.ordered = nil
	c.poolQueue, c.poolHead = nil, 0
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
	for _, sc := range c.wq.close(terr) {
		sc.release() // outcomes parked in the outbox: their handlers have returned
	}
	if c.rbuf != nil {
		putReadBuf(c.rbuf)
		c.rbuf = nil
	}
	c.asm = nil
	c.lastStream = nil
	c.batch.release()
	c.wout.release()
	c.tr.outMu.Lock()
	c.tr.out.release()
	c.tr.outMu.Unlock()
	if c.drainTimer != nil {
		c.drainTimer.Stop()
	}
	if c.lingerTimer != nil {
		c.lingerTimer.Stop()
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
// connection within a quarter of its timeout, a stalled one within a
// quarter of WriteStallTimeout, and to ping on time.
func (c *Conn) tickInterval() time.Duration {
	d := time.Duration(0)
	if c.cfg.KeepaliveInterval > 0 {
		d = c.cfg.KeepaliveInterval / 2
	}
	if it := c.cfg.InactivityTimeout; it > 0 && (d == 0 || it/4 < d) {
		d = it / 4
	}
	if st := c.cfg.WriteStallTimeout; st > 0 && (d == 0 || st/4 < d) {
		d = st / 4
	}
	if d > 0 && d < 5*time.Millisecond {
		d = 5 * time.Millisecond
	}
	return d
}

// tick runs on a timer goroutine: write stalls (§9), keepalive and
// inactivity (§8).
func (c *Conn) tick() {
	now := time.Now()
	if st := c.cfg.WriteStallTimeout; st > 0 {
		if since := c.stallSince.Load(); since != 0 && now.UnixNano()-since >= int64(st) {
			err := fmt.Errorf("%w: nothing written for %v", ErrSlowReader, st)
			c.closeWith(err, codec.CodeSlowReader)
			c.report(err)
			return
		}
	}
	if ka := c.cfg.KeepaliveInterval; ka > 0 {
		last := time.Unix(0, c.lastRecv.Load())
		if sent := c.pingSent.Load(); sent != 0 && last.UnixNano() < sent {
			if now.Sub(time.Unix(0, sent)) >= c.cfg.KeepaliveTimeout {
				c.closeWith(ErrKeepalive, codec.CodeKeepalive)
				c.report(ErrKeepalive)
				return
			}
		} else if now.Sub(last) >= ka {
			c.pingSent.Store(now.UnixNano())
			c.queueControl(codec.Header{Kind: codec.KindPing, Arg: uint32(now.UnixNano())}, false)
		}
	}
	c.mu.Lock()
	if c.closeErr != nil {
		// Closing (closeErr is set only by a close in progress).
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
			c.closeErr = ErrIdle // before the GOAWAY can reach the peer, which closes at once
			trigger := c.sendGoAwayLocked(codec.CodeIdle, ErrIdle.Error())
			c.mu.Unlock()
			if trigger {
				c.scheduleFlush()
			}
			c.closeGraceful(ErrIdle, codec.CodeOK)
			return
		}
	}
	release := c.idleReleaseDueLocked(now, c.tickInterval())
	c.timer.Reset(c.tickInterval())
	c.mu.Unlock()
	if release {
		c.onLoop(c.releaseIdle)
	}
}
