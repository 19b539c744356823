package conn

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

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
}

// Request is one call as a handler sees it.
type Request struct {
	// Method is the called method's ID.
	Method uint64
	// Payload is the request. It is valid until the handler returns, unless
	// the handler calls Keep.
	Payload []byte
	// Metadata travels with the call; valid as long as Payload.
	Metadata codec.Metadata

	sc *serverCall
}

// Conn is the connection the call arrived on.
func (r *Request) Conn() *Conn { return r.sc.c }

// Keep lets the handler keep Payload and Metadata after it returns: their
// buffer is not recycled (the garbage collector frees it). For handlers that
// hand request bytes to code that outlives them (Raft log entries).
func (r *Request) Keep() {
	if r.sc.mode == ModeInline && r.sc.buf == nil {
		// Inline payloads alias the read buffer: copy them once.
		b := make([]byte, 0, len(r.Metadata)+len(r.Payload))
		b = append(append(b, r.Metadata...), r.Payload...)
		r.Metadata, r.Payload = b[:len(r.Metadata):len(r.Metadata)], b[len(r.Metadata):]
	}
	r.sc.buf = nil
}

// ReplyBuffer returns an empty buffer with capacity for at least n bytes for
// encoding the reply into; it is valid until the handler returns and is
// recycled after the reply is sent.
func (r *Request) ReplyBuffer(n int) []byte {
	if r.sc.reply == nil {
		r.sc.reply = getBuf(n)
	}
	return (*r.sc.reply)[:0]
}

// serverCall is an acceptor's call or stream in flight, in Conn.inflight.
type serverCall struct {
	c         *Conn
	id        uint32
	route     *Route
	mode      Mode
	urgent    bool
	ctx       *callCtx
	req       Request
	buf       *[]byte // pooled copy of the request; nil if inline or kept
	reply     *[]byte // pooled reply buffer from ReplyBuffer
	stream    *ServerStream
	cancelled bool // guarded by c.mu: the dialer sent CANCEL
}

var serverCallPool = sync.Pool{New: func() any { return new(serverCall) }}

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
	if c.goingAway && id > c.lastID {
		c.mu.Unlock()
		c.replyError(id, codec.CodeUnavailable, "", "connection is going away", urgent, true)
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
	case len(c.inflight) >= int(c.cfg.MaxCalls):
		code, msg = codec.CodeResourceExhausted, "too many calls in flight on this connection"
	case isStream && c.streams >= int(c.cfg.MaxStreams):
		code, msg = codec.CodeResourceExhausted, "too many streams on this connection"
	}
	if code != codec.CodeOK {
		c.mu.Unlock()
		c.replyError(id, code, "", msg, urgent, true)
		return nil
	}
	sc := serverCallPool.Get().(*serverCall)
	*sc = serverCall{c: c, id: id, route: route, mode: route.Mode, urgent: urgent}
	sc.req = Request{Method: m.method, Payload: m.payload, Metadata: m.metadata, sc: sc}
	sc.ctx = newCallCtx(c, m.h.Arg)
	c.inflight[id] = sc
	if isStream {
		c.streams++
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
		sc.stream = &ServerStream{sc: sc, credit: make(chan struct{}, 1), window: int(c.peer.window)}
		c.handlers.Add(1)
		go func() {
			defer c.handlers.Done()
			sc.run(false)
		}()
	case sc.mode == ModeOrdered:
		c.mu.Lock()
		c.ordered = append(c.ordered, sc)
		start := !c.ordering
		c.ordering = true
		c.mu.Unlock()
		if start {
			c.handlers.Add(1)
			go c.runOrdered()
		}
	default:
		if !c.cfg.Router.Submit(sc) {
			c.mu.Lock()
			delete(c.inflight, id)
			c.activity++
			c.mu.Unlock()
			sc.ctx.cancel(context.Canceled)
			sc.release()
			c.replyError(id, codec.CodeResourceExhausted, "", "server worker pool is full", urgent, true)
		}
	}
	return nil
}

// ownRequest copies the request's metadata and payload into a pooled buffer.
func (sc *serverCall) ownRequest() {
	md, p := sc.req.Metadata, sc.req.Payload
	b := getBuf(len(md) + len(p))
	*b = append(append((*b)[:0], md...), p...)
	sc.buf = b
	sc.req.Metadata = codec.Metadata((*b)[:len(md):len(md)])
	sc.req.Payload = (*b)[len(md):]
}

// runOrdered serves the connection's ModeOrdered calls one at a time.
func (c *Conn) runOrdered() {
	defer c.handlers.Done()
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

// Run implements Task: the pool runs the call.
func (sc *serverCall) Run() { sc.run(false) }

// run calls the handler, turns a panic into CodeInternal for this call only,
// and sends the outcome.
func (sc *serverCall) run(onLoop bool) {
	var reply []byte
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				sc.c.cfg.Logger.Error("hawser: handler panicked", "method", fmt.Sprintf("%#x", sc.req.Method),
					"panic", r, "stack", string(debug.Stack()))
				err = &panicError{r}
			}
		}()
		if sc.stream != nil {
			err = sc.route.Stream(sc.ctx, &sc.req, sc.stream)
		} else {
			reply, err = sc.route.Unary(sc.ctx, &sc.req)
		}
	}()
	sc.finish(reply, err, onLoop)
}

type panicError struct{ v any }

func (e *panicError) Error() string        { return fmt.Sprintf("handler panicked: %v", e.v) }
func (e *panicError) RPCCode() codec.Code  { return codec.CodeInternal }
func (e *panicError) Is(target error) bool { return false }

// finish sends the reply, STREAM_END or ERROR unless the call was
// cancelled, then takes the call out of inflight and recycles it. The
// outcome is queued before the call leaves inflight, so a graceful
// shutdown that waits for inflight to empty never closes ahead of it.
func (sc *serverCall) finish(reply []byte, err error, onLoop bool) {
	c := sc.c
	c.mu.Lock()
	cancelled := sc.cancelled
	c.mu.Unlock()
	if !cancelled {
		// A stream's items go in the bulk queue; its end must not overtake them.
		urgent := sc.urgent && sc.stream == nil
		switch {
		case err != nil:
			code, name, msg := hawser.WireError(err)
			c.replyError(sc.id, code, name, msg, urgent, onLoop)
		case sc.stream != nil:
			_ = c.queueFrameCtx(context.Background(), codec.Header{Kind: codec.KindStreamEnd, ID: sc.id}, nil, nil, false, onLoop, true)
		default:
			if e := c.sendMessage(context.Background(), codec.Header{Kind: codec.KindReply, ID: sc.id}, nil, reply, sc.urgent, onLoop); errors.Is(e, ErrMessageTooLarge) {
				c.replyError(sc.id, codec.CodeMessageTooLarge, "", "reply exceeds the caller's maximum message size", sc.urgent, onLoop)
			}
		}
	}
	c.mu.Lock()
	if c.inflight[sc.id] == sc {
		delete(c.inflight, sc.id)
		if sc.stream != nil {
			c.streams--
		}
	}
	c.activity++
	c.checkDrainedLocked()
	c.mu.Unlock()
	sc.ctx.cancel(context.Canceled) // the handler returned: release its timer
	sc.release()
}

func (sc *serverCall) release() {
	if sc.buf != nil {
		putBuf(sc.buf)
	}
	if sc.reply != nil {
		putBuf(sc.reply)
	}
	*sc = serverCall{}
	serverCallPool.Put(sc)
}

// replyError queues an ERROR frame for a call.
func (c *Conn) replyError(id uint32, code codec.Code, name, msg string, urgent, fromLoop bool) {
	if code == codec.CodeOK {
		code = codec.CodeUnknown // an error must carry an error code
	}
	var stack [256]byte
	body := codec.AppendErrorBody(stack[:0], name, msg)
	_ = c.queueFrameCtx(context.Background(), codec.Header{Kind: codec.KindError, Code: code, ID: id}, nil, body, urgent, fromLoop, !fromLoop)
}

// onCancel stops a call or stream on the loop: its context is cancelled and
// nothing is sent for it any more.
func (c *Conn) onCancel(id uint32) {
	c.dropAssembly(id)
	c.mu.Lock()
	sc := c.inflight[id]
	if sc != nil {
		sc.cancelled = true
		sc.ctx.cancel(context.Canceled)
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
	return sc.stream.grant(n)
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
