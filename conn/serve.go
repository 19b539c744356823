package conn

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
)

// Mode says where a method's handler runs.
type Mode uint8

const (
	// ModePool runs the handler on the Router's bounded worker pool
	// (Router.Submit). The default.
	ModePool Mode = iota
	// ModeInline runs the handler on the event loop, with no goroutine hop.
	// The handler must never block: it delays every connection on the loop.
	ModeInline
	// ModeOrdered runs the handlers of all ModeOrdered methods of one
	// connection one at a time, in arrival order, on a goroutine of that
	// connection: no pool hop, and replies leave in request order (a
	// pipeline of Raft appends).
	ModeOrdered
)

// UnaryHandler serves a unary call. The returned reply may alias
// req.Payload or req.ReplyBuffer; it is copied before the call's buffers are
// reused.
type UnaryHandler func(ctx context.Context, req *Request) ([]byte, error)

// StreamHandler serves a server-push stream: it sends items with s.Send and
// returns nil to end the stream, or an error that the consumer receives.
// Stream handlers run on their own goroutine, at most MaxStreams per
// connection.
type StreamHandler func(ctx context.Context, req *Request, s *ServerStream) error

// Route is how to serve one method: exactly one of Unary and Stream is set.
type Route struct {
	Mode   Mode
	Unary  UnaryHandler
	Stream StreamHandler
	// Keep says the handler keeps every request (Request.Keep): its copy
	// off the read buffer is then made at its exact size, outside the
	// size-class pools, whose rounding up (a 4.1 KiB request takes a 16 KiB
	// buffer) would otherwise stay with the kept bytes.
	Keep bool
	// RunCancelled runs the handler even for a call cancelled before it
	// started (its context is then already done): for handlers that
	// release what the request names (hawser.subscribe frees the
	// observable it would have taken).
	RunCancelled bool
}

// Task is work for a Router's pool.
type Task interface{ Run() }

// Router resolves methods for accepted connections and runs their pool
// handlers. The server package implements it.
type Router interface {
	// Route returns how to serve method, or nil if it is not served.
	Route(method uint64) *Route
	// Methods lists the served method IDs (sent in HELLO_ACK).
	Methods() []uint64
	// Submit runs t on another goroutine, or returns false at once when it
	// cannot take more work (the caller then answers ResourceExhausted).
	Submit(t Task) bool
	// Go runs f on a new goroutine that the Router owns and waits for
	// when it shuts down: a stream's handler, or the goroutine that runs a
	// connection's ModeOrdered calls. f returns once the connection has
	// closed and the handlers it runs have returned.
	Go(f func())
}

// Request is one call as a handler sees it. It must not be used after the
// handler returns: its buffers are recycled then (Keep excepted), and its
// methods no longer reach the call.
type Request struct {
	// Method is the called method's ID.
	Method uint64
	// Payload is the request. It is valid until the handler returns, unless
	// the handler calls Keep.
	Payload []byte
	// Metadata travels with the call; valid as long as Payload.
	Metadata codec.Metadata

	conn *Conn
	sc   *serverCall // nil once the call has ended
}

// Conn is the connection the call arrived on.
func (r *Request) Conn() *Conn { return r.conn }

// Keep lets the handler keep Payload and Metadata after it returns: their
// buffer is not recycled (the garbage collector frees it). For handlers that
// hand request bytes to code that outlives them (Raft log entries). A
// request in a pooled buffer is copied once to a buffer of its exact size
// (the pooled one goes back to its pool); a Route with Keep set makes that
// copy in the first place.
func (r *Request) Keep() {
	sc := r.sc
	if sc == nil {
		return // the call ended: too late to keep anything
	}
	if sc.buf != nil || sc.mode == ModeInline {
		// Inline payloads alias the read buffer; pooled copies are
		// rounded up to their class: copy them once, exactly.
		b := make([]byte, 0, len(r.Metadata)+len(r.Payload))
		b = append(append(b, r.Metadata...), r.Payload...)
		r.Metadata, r.Payload = b[:len(r.Metadata):len(r.Metadata)], b[len(r.Metadata):]
		if sc.buf != nil {
			putBuf(sc.buf)
		}
	}
	sc.buf = nil
}

// ReplyBuffer returns an empty buffer with capacity for at least n bytes for
// encoding the reply into; it is valid until the handler returns and is
// recycled after the reply is sent.
func (r *Request) ReplyBuffer(n int) []byte {
	sc := r.sc
	if sc == nil {
		return make([]byte, 0, n) // the call ended: nothing to recycle it with
	}
	if sc.reply == nil {
		sc.reply = getBuf(n)
	}
	return (*sc.reply)[:0]
}

// serverCall is an acceptor's call or stream in flight, in Conn.inflight,
// from its CALL until the last frame of its outcome is queued (or it is
// dropped). Its Request lives in its context, which is not recycled.
type serverCall struct {
	c      *Conn
	id     uint32
	route  *Route
	mode   Mode
	urgent bool
	ctx    *callCtx
	buf    *[]byte // pooled copy of the request; nil if inline or kept
	reply  *[]byte // pooled reply buffer from ReplyBuffer
	stream *ServerStream

	counted   atomic.Bool // holds a MaxCalls slot (and a MaxStreams one for a stream)
	cancelled atomic.Bool // the dialer sent CANCEL

	// The outcome, set by finish; deliver sends it, on the handler's
	// goroutine or, once parked in the outbox, on the loop.
	out       outMsg
	outUrgent bool
	ebuf      [128]byte // room for a short ERROR body
}

var serverCallPool = sync.Pool{New: func() any { return new(serverCall) }}

// req is the handler's view of the call.
func (sc *serverCall) req() *Request { return &sc.ctx.req }

// onCall admits a CALL on the loop and starts its handler.
func (c *Conn) onCall(m message) error {
	id := m.h.ID
	if id&1 == 0 {
		return fmt.Errorf("%w: dialer call ID %d is even", codec.ErrBadFrame, id)
	}
	isStream := m.h.Flags&codec.FlagStream != 0
	urgent := m.h.Flags&codec.FlagUrgent != 0
	route := c.cfg.Router.Route(m.method)
	c.mu.Lock()
	if _, dup := c.inflight[id]; dup {
		c.mu.Unlock()
		return fmt.Errorf("%w: call ID %d is already in flight", codec.ErrBadFrame, id)
	}
	if c.goingAway && id > c.acceptMax {
		// The GOAWAY was queued under c.mu when goingAway was set, so this
		// ERROR follows it (§7).
		c.mu.Unlock()
		c.replyError(id, codec.CodeUnavailable, "", "connection is going away", urgent)
		return nil
	}
	c.lastID = max(c.lastID, id)
	var code codec.Code
	var msg string
	switch {
	case route == nil:
		code, msg = codec.CodeUnimplemented, fmt.Sprintf("method %#x is not served", m.method)
	case isStream != (route.Stream != nil):
		code, msg = codec.CodeUnimplemented, fmt.Sprintf("method %#x is not served as a %s", m.method, map[bool]string{true: "stream", false: "unary call"}[isStream])
	case int(c.callSlots.Load()) >= int(c.cfg.MaxCalls) || len(c.inflight) >= 2*int(c.cfg.MaxCalls):
		// Cancelled calls whose handlers still run no longer count
		// (the dialer freed their slots, §4), up to as many again.
		code, msg = codec.CodeResourceExhausted, "too many calls in flight on this connection"
	case isStream && int(c.streamSlots.Load()) >= int(c.cfg.MaxStreams):
		code, msg = codec.CodeResourceExhausted, "too many streams on this connection"
	}
	if code != codec.CodeOK {
		c.mu.Unlock()
		c.replyError(id, code, "", msg, urgent)
		return nil
	}
	sc := serverCallPool.Get().(*serverCall)
	*sc = serverCall{c: c, id: id, route: route, mode: route.Mode, urgent: urgent}
	sc.counted.Store(true)
	sc.ctx = newCallCtx(c, m.h.Arg)
	sc.ctx.req = Request{Method: m.method, Payload: m.payload, Metadata: m.metadata, conn: c, sc: sc}
	c.inflight[id] = sc
	c.callSlots.Add(1)
	if isStream {
		c.streamSlots.Add(1)
	}
	c.activity++
	c.mu.Unlock()

	if !isStream && route.Mode == ModeInline {
		sc.run(true)
		return nil
	}
	// The handler runs after this callback returns: copy what aliases the
	// read buffer.
	if !m.owned || len(m.metadata) > 0 {
		sc.ownRequest()
	}
	switch {
	case isStream:
		sc.stream = &ServerStream{sc: sc, credit: make(chan struct{}, 1), window: int(c.peer.window), limit: int(c.peer.window)}
		c.spawn(func() { sc.run(false) })
	case sc.mode == ModeOrdered:
		c.mu.Lock()
		c.ordered = append(c.ordered, sc)
		start := !c.ordering
		c.ordering = true
		c.mu.Unlock()
		if start {
			c.spawn(c.runOrdered)
		}
	default:
		c.submit(sc)
	}
	return nil
}

// submit runs a ModePool call on the Router's pool, on the loop. At most
// PoolShare calls of the connection run there at once; more wait in the
// connection's queue, in arrival order, and run on the goroutine of one
// that finishes (serverCall.Run). When the pool cannot take the call and
// none of the connection's calls runs to take it later, it is refused.
func (c *Conn) submit(sc *serverCall) {
	c.mu.Lock()
	if c.poolRunning >= c.cfg.PoolShare {
		c.poolQueue = append(c.poolQueue, sc)
		c.mu.Unlock()
		return
	}
	c.poolRunning++
	c.mu.Unlock()
	if c.cfg.Router.Submit(sc) {
		return
	}
	c.mu.Lock()
	c.poolRunning--
	if c.poolRunning > 0 {
		c.poolQueue = append(c.poolQueue, sc)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.replyError(sc.id, codec.CodeResourceExhausted, "", "server worker pool is full", sc.urgent)
	c.endCall(sc)
}

// nextPooled returns the connection's next queued ModePool call for the
// goroutine that just finished one, or nil, giving the slot back.
func (c *Conn) nextPooled() *serverCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.poolHead < len(c.poolQueue) {
		sc := c.poolQueue[c.poolHead]
		c.poolQueue[c.poolHead] = nil
		c.poolHead++
		if c.poolHead == len(c.poolQueue) {
			// Empty: reuse the array, unless a burst grew it large.
			c.poolQueue, c.poolHead = c.poolQueue[:0], 0
			if cap(c.poolQueue) > 256 {
				c.poolQueue = nil
			}
		}
		return sc
	}
	c.poolRunning--
	return nil
}

// spawn runs f on a goroutine of the Router, counted in c.handlers.
func (c *Conn) spawn(f func()) {
	c.handlers.Add(1)
	c.cfg.Router.Go(func() {
		defer c.handlers.Done()
		f()
	})
}

// endCall ends sc once its outcome is queued (or there is none): it leaves
// inflight and gives up its slots, the drain is checked, and sc is
// recycled.
func (c *Conn) endCall(sc *serverCall) {
	c.mu.Lock()
	if c.inflight[sc.id] == sc {
		delete(c.inflight, sc.id)
	}
	c.uncount(sc)
	c.activity++
	c.checkDrainedLocked()
	c.mu.Unlock()
	sc.release()
}

// uncount frees sc's MaxCalls (and MaxStreams) slot, once.
func (c *Conn) uncount(sc *serverCall) {
	if sc.counted.CompareAndSwap(true, false) {
		c.callSlots.Add(-1)
		if sc.stream != nil {
			c.streamSlots.Add(-1)
		}
	}
}

// ownRequest copies the request's metadata and payload into a pooled buffer.
func (sc *serverCall) ownRequest() {
	r := sc.req()
	md, p := r.Metadata, r.Payload
	if sc.route.Keep {
		b := make([]byte, 0, len(md)+len(p))
		b = append(append(b, md...), p...)
		r.Metadata, r.Payload = codec.Metadata(b[:len(md):len(md)]), b[len(md):]
		return // sc.buf stays nil: nothing to recycle
	}
	b := getBuf(len(md) + len(p))
	*b = append(append((*b)[:0], md...), p...)
	sc.buf = b
	r.Metadata = codec.Metadata((*b)[:len(md):len(md)])
	r.Payload = (*b)[len(md):]
}

// runOrdered serves the connection's ModeOrdered calls one at a time.
func (c *Conn) runOrdered() {
	for {
		c.mu.Lock()
		if len(c.ordered) == 0 {
			c.ordering = false
			c.mu.Unlock()
			return
		}
		sc := c.ordered[0]
		c.ordered[0] = nil
		c.ordered = c.ordered[1:]
		c.mu.Unlock()
		sc.run(false)
	}
}

// Run implements Task: the pool runs the call, then the connection's
// ModePool calls that queued behind its PoolShare, one after the other.
func (sc *serverCall) Run() {
	c := sc.c
	for sc != nil {
		sc.run(false)
		sc = c.nextPooled()
	}
}

// run calls the handler, turns a panic into CodeInternal for this call only,
// and sends the outcome.
func (sc *serverCall) run(onLoop bool) {
	if sc.cancelled.Load() && !sc.route.RunCancelled {
		sc.finish(nil, context.Canceled, onLoop) // cancelled while it queued: nothing to run
		return
	}
	var reply []byte
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				sc.c.log.Error("hawser: handler panicked", "method", fmt.Sprintf("%#x", sc.req().Method),
					"panic", r, "stack", string(debug.Stack()))
				err = &panicError{r}
			}
		}()
		if sc.stream != nil {
			err = sc.route.Stream(sc.ctx, sc.req(), sc.stream)
		} else {
			reply, err = sc.route.Unary(sc.ctx, sc.req())
		}
	}()
	sc.finish(reply, err, onLoop)
}

type panicError struct{ v any }

func (e *panicError) Error() string        { return fmt.Sprintf("handler panicked: %v", e.v) }
func (e *panicError) RPCCode() codec.Code  { return codec.CodeInternal }
func (e *panicError) Is(target error) bool { return false }

// finish turns the handler's result into the call's outcome (REPLY,
// STREAM_END or ERROR) and delivers it. No Send of a stream runs after it.
func (sc *serverCall) finish(reply []byte, err error, onLoop bool) {
	c := sc.c
	if sc.stream != nil {
		sc.stream.end()
	}
	switch {
	case err != nil:
		code, name, msg := hawser.WireError(err)
		sc.setError(code, name, msg)
	case sc.stream != nil:
		sc.out = outMsg{h: codec.Header{Kind: codec.KindStreamEnd, ID: sc.id}}
	case len(reply) > int(c.peer.maxMessage):
		sc.setError(codec.CodeMessageTooLarge, "", "reply exceeds the caller's maximum message size")
	default:
		sc.out = outMsg{h: codec.Header{Kind: codec.KindReply, ID: sc.id}, payload: reply}
	}
	// A stream's items go in the bulk queue; its end must not overtake them.
	sc.outUrgent = sc.urgent && sc.stream == nil
	if onLoop {
		c.deliver(sc, deliverInline)
	} else {
		c.deliver(sc, deliverByHandler)
	}
}

// ownPayload makes a REPLY's payload the call's own (a pooled copy) unless
// it is already in the call's reply buffer, so that it can be parked.
func (sc *serverCall) ownPayload() {
	m := &sc.out
	if m.h.Kind != codec.KindReply || len(m.payload) == 0 {
		return
	}
	if sc.reply != nil && cap(*sc.reply) > 0 && &(*sc.reply)[:1][0] == &m.payload[:1][0] {
		return
	}
	b := getBuf(len(m.payload))
	*b = append((*b)[:0], m.payload...)
	if sc.reply != nil {
		putBuf(sc.reply)
	}
	sc.reply = b
	m.payload = *b
}

func (sc *serverCall) setError(code codec.Code, name, msg string) {
	if code == codec.CodeOK {
		code = codec.CodeUnknown // an error must carry an error code
	}
	sc.out = outMsg{h: codec.Header{Kind: codec.KindError, Code: code, ID: sc.id}, payload: codec.AppendErrorBody(sc.ebuf[:0], name, msg)}
}

// How deliver may wait.
type deliverMode uint8

const (
	// deliverByHandler: on the handler's goroutine. With no room (or
	// outcomes of its class already parked), the outcome is parked in the
	// outbox and the goroutine, often a shared pool worker, is free at once.
	deliverByHandler deliverMode = iota
	// deliverInline: on the loop, for a ModeInline handler. With no room
	// the outcome is parked, its reply copied (it may point into the read
	// buffer), like a handler's: the call's MaxCalls slot bounds it, so
	// it never pauses the peer's input.
	deliverInline
	// deliverParked: on the loop, continuing a parked outcome; stops when
	// there is no room.
	deliverParked
)

// deliver queues sc's outcome frame by frame and reports whether it is
// done; then sc has been released. The call gives up its slot (MaxCalls,
// MaxStreams) in the critical section that queues its last frame: before
// that frame can reach the wire, so a dialer that reuses the slot as soon
// as the outcome arrives is never refused, and not before there is room
// for it, so parked outcomes keep their slots and MaxCalls bounds them. It
// leaves inflight only after that frame is queued, so a drain, which waits
// for an empty inflight and an empty queue, cannot close between the two.
func (c *Conn) deliver(sc *serverCall, how deliverMode) bool {
	q := &c.wq
	m := &sc.out
	class := 0
	if sc.outUrgent {
		class = 1
	}
	for {
		if !m.started && sc.cancelled.Load() {
			// The caller cancelled: nothing is sent for the call (§3.3).
			c.endCall(sc)
			return true
		}
		fh, pre, body, scratch, n, last := c.nextFrame(m)
		q.mu.Lock()
		if q.err != nil {
			// Closed: onClose cancelled the call and emptied inflight; a
			// parked outcome is released by onClose instead.
			q.mu.Unlock()
			putScratch(scratch)
			if how != deliverParked {
				sc.release()
			}
			return true
		}
		if !q.roomLocked(sc.outUrgent) || (how != deliverParked && len(q.outbox[class]) > 0) {
			trigger := false
			switch how {
			case deliverByHandler:
				q.outbox[class] = append(q.outbox[class], sc)
				trigger = c.triggerLocked(false)
			case deliverInline:
				// The reply may point into the read buffer: it must
				// outlive this callback. The loop's flush sends it.
				sc.ownPayload()
				q.outbox[class] = append(q.outbox[class], sc)
			}
			q.mu.Unlock()
			putScratch(scratch)
			if trigger {
				c.scheduleFlush()
			}
			return false
		}
		if last {
			c.uncount(sc)
		}
		c.writeFrameLocked(fh, pre, body, sc.outUrgent)
		k := c.kickLocked(how != deliverByHandler, true)
		q.mu.Unlock()
		putScratch(scratch)
		m.advance(n)
		c.kick(k)
		if last {
			c.endCall(sc)
			return true
		}
	}
}

func putScratch(b *[]byte) {
	if b != nil {
		putBuf(b)
	}
}

// sendParked runs on the loop (in flush): it moves parked outcomes into the
// queues, urgent ones first and each class in order, while there is room.
func (c *Conn) sendParked() {
	q := &c.wq
	for class := 1; class >= 0; class-- {
		for {
			q.mu.Lock()
			if len(q.outbox[class]) == 0 {
				q.outbox[class] = nil
				q.mu.Unlock()
				break
			}
			sc := q.outbox[class][0]
			q.mu.Unlock()
			if !c.deliver(sc, deliverParked) {
				break
			}
			q.mu.Lock()
			q.outbox[class][0] = nil
			q.outbox[class] = q.outbox[class][1:]
			q.mu.Unlock()
		}
	}
}

func (sc *serverCall) release() {
	sc.ctx.cancel(context.Canceled) // the call ended: release its timer
	sc.ctx.req.sc = nil
	if sc.buf != nil {
		putBuf(sc.buf)
	}
	if sc.reply != nil {
		putBuf(sc.reply)
	}
	*sc = serverCall{}
	serverCallPool.Put(sc)
}

// replyError queues, on the loop, an ERROR frame for a call it refuses.
func (c *Conn) replyError(id uint32, code codec.Code, name, msg string, urgent bool) {
	if code == codec.CodeOK {
		code = codec.CodeUnknown // an error must carry an error code
	}
	var stack [256]byte
	body := codec.AppendErrorBody(stack[:0], name, msg)
	_ = c.queueFrame(codec.Header{Kind: codec.KindError, Code: code, ID: id}, nil, body, urgent, true)
}

// onCancel stops a call or stream on the loop: its context is cancelled and
// nothing is sent for it any more.
func (c *Conn) onCancel(id uint32) {
	c.dropAssembly(id)
	c.mu.Lock()
	sc := c.inflight[id]
	if sc != nil {
		sc.cancelled.Store(true)
		sc.ctx.cancel(context.Canceled)
		// The dialer freed the call's slot when it cancelled: so does this
		// side, though the handler may still run (§4).
		c.uncount(sc)
	}
	c.mu.Unlock()
}

// onCredit grows a stream's window on the loop. It holds c.mu while it uses
// the call: a handler returning now releases its serverCall (finish) only
// after taking c.mu.
func (c *Conn) onCredit(id, n uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	sc := c.inflight[id]
	if sc == nil {
		return nil // the stream ended; credit in flight
	}
	if sc.stream == nil {
		return fmt.Errorf("%w: CREDIT for unary call %d", codec.ErrBadFrame, id)
	}
	return sc.stream.grant(id, n)
}

// Wait blocks until the connection's ordered and stream handler goroutines
// have returned, or ctx ends.
func (c *Conn) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		c.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
