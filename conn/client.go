package conn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
)

// call is a dialer's pending call or stream, keyed by ID in Conn.pending.
// Whoever removes it from pending completes it, exactly once.
type call struct {
	id     uint32
	done   chan struct{} // Call: a signal (cap 1); Future: closed
	closes bool          // done is closed rather than signalled
	urgent bool          // sent with FlagUrgent; its CANCEL goes the same way
	resp   []byte
	err    error
	stream *Stream
	// then, if set (GoFunc), runs once the call is complete, on the
	// goroutine that completed it (closes is set).
	then func()
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

func getCall() *call { return callPool.Get().(*call) }

func putCall(cl *call) {
	cl.resp, cl.err, cl.stream, cl.urgent = nil, nil, nil, false
	callPool.Put(cl)
}

func (cl *call) complete(resp []byte, err error) {
	cl.resp, cl.err = resp, err
	if cl.closes {
		close(cl.done)
		if cl.then != nil {
			cl.then()
		}
	} else {
		cl.done <- struct{}{}
	}
}

func (cl *call) fail(err error) {
	if cl.stream != nil {
		cl.stream.end(err)
		return
	}
	cl.complete(nil, err)
}

// maxCallID is the last odd ID a dialer uses; then the connection drains and
// the caller (a pool) moves to a new one (PROTOCOL.md §3.3).
const maxCallID = 1<<32 - 1

// Call makes a unary call of method with payload req and returns the reply
// payload, which the caller owns. ctx's deadline travels with the call and
// becomes the handler's; cancelling ctx sends CANCEL and returns ctx.Err().
// A *hawser.TransportError means the connection failed (the call may have
// run), a *hawser.RemoteError that the handler returned an error.
func (c *Conn) Call(ctx context.Context, method uint64, req []byte, opts ...hawser.CallOption) ([]byte, error) {
	o := hawser.Apply(opts)
	cl := getCall()
	if err := c.start(ctx, cl, method, req, &o, 0); err != nil {
		putCall(cl)
		return nil, err
	}
	select {
	case <-cl.done:
		resp, err := cl.resp, cl.err
		putCall(cl)
		return resp, err
	case <-ctx.Done():
		if !c.abandon(cl) {
			<-cl.done // completion won the race; wait for it before reuse
		}
		putCall(cl)
		return nil, ctx.Err()
	}
}

// Future is a call in flight, from Go.
type Future struct {
	c    *Conn
	cl   *call
	stop func() bool
}

// Go starts a unary call and returns at once. The call is cancelled when ctx
// ends (a CANCEL is sent) or Cancel is called. Futures completed in the
// order they were started give a pipeline whose replies are consumed in
// send order; with a ModeOrdered method the handler also runs in that order.
func (c *Conn) Go(ctx context.Context, method uint64, req []byte, opts ...hawser.CallOption) (*Future, error) {
	return c.GoFunc(ctx, method, req, nil, opts...)
}

// GoFunc is Go with a callback: then runs exactly once when the call
// completes, fails or is cancelled, on the goroutine that completed it —
// often the connection's event loop — so it must not block and must not
// call into the connection; it may read the Future's result with Wait,
// which then returns at once. It saves the goroutine hop of a waiter on
// Done (a pipeline that hands replies on in send order). A nil then is Go.
func (c *Conn) GoFunc(ctx context.Context, method uint64, req []byte, then func(*Future), opts ...hawser.CallOption) (*Future, error) {
	o := hawser.Apply(opts)
	cl := &call{done: make(chan struct{}), closes: true}
	f := &Future{c: c, cl: cl}
	if then == nil {
		if err := c.start(ctx, cl, method, req, &o, 0); err != nil {
			return nil, err
		}
		f.stop = context.AfterFunc(ctx, func() { f.cancel(ctx.Err()) })
		return f, nil
	}
	// then runs where the call completes, unless that is before GoFunc
	// has armed it (set f.stop): then GoFunc runs it before returning.
	var mu sync.Mutex
	var fired, armed bool
	cl.then = func() {
		mu.Lock()
		fired = true
		run := armed
		mu.Unlock()
		if run {
			f.stop()
			then(f)
		}
	}
	if err := c.start(ctx, cl, method, req, &o, 0); err != nil {
		return nil, err
	}
	f.stop = context.AfterFunc(ctx, func() { f.cancel(ctx.Err()) })
	mu.Lock()
	armed = true
	early := fired
	mu.Unlock()
	if early {
		f.stop()
		then(f)
	}
	return f, nil
}

// Done is closed when the call completed, failed or was cancelled.
func (f *Future) Done() <-chan struct{} { return f.cl.done }

// Wait waits for the call and returns its reply or error.
func (f *Future) Wait() ([]byte, error) {
	<-f.cl.done
	f.stop()
	return f.cl.resp, f.cl.err
}

// Cancel cancels the call: it sends CANCEL and the future completes with
// context.Canceled, unless the reply arrived first.
func (f *Future) Cancel() { f.cancel(context.Canceled) }

func (f *Future) cancel(err error) {
	if f.c.abandon(f.cl) {
		f.cl.complete(nil, err)
	}
}

// start registers cl under a new ID and queues its CALL.
func (c *Conn) start(ctx context.Context, cl *call, method uint64, req []byte, o *hawser.CallOptions, flags codec.Flags) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !c.Serves(method) {
		return fmt.Errorf("%w: method %#x", ErrUnknownMethod, method)
	}
	if len(req) > int(c.peer.maxMessage) {
		return ErrMessageTooLarge
	}
	if len(o.Metadata) > codec.MaxMetadataSize {
		return codec.ErrMetadataTooLarge
	}
	var arg uint32
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		if left <= 0 {
			return context.DeadlineExceeded
		}
		arg = codec.DeadlineArg(left)
	}
	cl.urgent = o.Urgent
	if err := c.register(ctx, cl); err != nil {
		return err
	}
	if o.Urgent {
		flags |= codec.FlagUrgent
	}
	h := codec.Header{Kind: codec.KindCall, Flags: flags, ID: cl.id, Arg: arg}
	var pb [codec.CallPrefixSize]byte
	prefix := pb[:]
	binary.BigEndian.PutUint64(prefix, method)
	if len(o.Metadata) > 0 {
		h.Flags |= codec.FlagMetadata
		prefix = codec.AppendCallPrefix(make([]byte, 0, codec.CallPrefixLen(o.Metadata)), method, o.Metadata)
	}
	if err := c.sendMessage(ctx, h, prefix, req, o.Urgent); err != nil {
		if c.abandon(cl) || cl.stream != nil {
			// A stream failed meanwhile was ended through its Stream, not done.
			return c.transportErr(err)
		}
		<-cl.done // a close or GOAWAY completed it meanwhile
		return cl.err
	}
	return nil
}

// register assigns cl an ID and adds it to pending, waiting while the
// acceptor's MaxCalls are in flight.
func (c *Conn) register(ctx context.Context, cl *call) error {
	c.mu.Lock()
	for {
		if c.closeErr != nil {
			err := c.closeErr
			c.mu.Unlock()
			return &hawser.TransportError{Op: "call", Addr: c.remote, Err: err}
		}
		if c.goingAway {
			c.mu.Unlock()
			return &hawser.TransportError{Op: "call", Addr: c.remote, Err: ErrGoAway}
		}
		if len(c.pending) < int(c.peer.maxCalls) && (cl.stream == nil || c.streams < int(c.peer.maxStreams)) {
			break
		}
		if c.slotWait == nil {
			c.slotWait = make(chan struct{})
		}
		wait := c.slotWait
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
		c.mu.Lock()
	}
	cl.id = c.nextID
	if c.nextID >= maxCallID-1 {
		c.goingAway = true // IDs exhausted: drain; new calls go elsewhere
	}
	c.nextID += 2
	c.pending[cl.id] = cl
	c.npending.Store(int32(len(c.pending)))
	if cl.stream != nil {
		c.streams++
	}
	c.activity++
	c.mu.Unlock()
	return nil
}

// abandon removes cl from pending if it is still there, and then sends
// CANCEL. It reports whether it removed it (and so owns completing it). The
// CANCEL goes in the queue its CALL went in, so it never overtakes it.
func (c *Conn) abandon(cl *call) bool {
	c.mu.Lock()
	if c.pending[cl.id] != cl {
		c.mu.Unlock()
		return false
	}
	delete(c.pending, cl.id)
	closeNow := c.callDoneLocked(cl)
	c.mu.Unlock()
	_ = c.queueFrameCtx(context.Background(), codec.Header{Kind: codec.KindCancel, ID: cl.id}, nil, nil, cl.urgent, false, false)
	if closeNow {
		c.closeWith(ErrGoAway, codec.CodeOK)
	}
	return true
}

// callDoneLocked accounts for cl leaving pending. It reports whether the
// connection is draining and now idle, so the caller (after unlocking)
// closes it.
func (c *Conn) callDoneLocked(cl *call) bool {
	c.npending.Store(int32(len(c.pending)))
	if cl.stream != nil {
		c.streams--
	}
	c.activity++
	if c.slotWait != nil {
		close(c.slotWait)
		c.slotWait = nil
	}
	c.checkDrainedLocked()
	return c.goingAway && len(c.pending) == 0
}

func (c *Conn) transportErr(err error) error {
	var te *hawser.TransportError
	if errors.As(err, &te) || errors.Is(err, ErrMessageTooLarge) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &hawser.TransportError{Op: "call", Addr: c.remote, Err: err}
}

// onResponse handles REPLY, ERROR and STREAM_END on the loop.
func (c *Conn) onResponse(m message) error {
	id := m.h.ID
	c.mu.Lock()
	cl := c.pending[id]
	if cl == nil {
		// Cancelled here already (or a stray ID): drop it.
		c.mu.Unlock()
		return nil
	}
	st := cl.stream
	var eb codec.ErrorBody
	switch m.h.Kind {
	case codec.KindError:
		// Validate before the call leaves pending: a violation closes the
		// connection, and onClose then fails the call with everything else.
		var err error
		if eb, err = codec.ParseErrorBody(m.payload); err != nil {
			c.mu.Unlock()
			return err
		}
	case codec.KindReply:
		if st != nil {
			c.mu.Unlock()
			return fmt.Errorf("%w: REPLY for stream %d", codec.ErrBadFrame, id)
		}
	case codec.KindStreamEnd:
		if st == nil {
			c.mu.Unlock()
			return fmt.Errorf("%w: STREAM_END for unary call %d", codec.ErrBadFrame, id)
		}
	}
	delete(c.pending, id)
	closeNow := c.callDoneLocked(cl)
	c.mu.Unlock()

	switch m.h.Kind {
	case codec.KindReply:
		resp := m.payload
		if !m.owned {
			resp = append(make([]byte, 0, len(resp)), resp...)
		}
		cl.complete(resp, nil)
	case codec.KindStreamEnd:
		st.end(nil)
	case codec.KindError:
		cl.fail(hawser.NewRemoteError(m.h.Code, string(eb.Name), string(eb.Message)))
	}
	if closeNow {
		c.closing.Store(true)
		_ = c.gc.Close()
	}
	return nil
}

// itemCost is what one stream frame takes from the window: its body plus
// its header, so that empty items are flow-controlled too (PROTOCOL.md §3.7).
func itemCost(body int) int { return body + codec.HeaderSize }
