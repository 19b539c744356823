package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
)

// Flow control (PROTOCOL.md §3.7). A stream's receiver announces a window W
// in its HELLO. Every STREAM_ITEM or CONTINUATION frame of the stream costs
// its body length plus the 16-byte header; the sender may have at most W of
// cost not yet returned by CREDIT. The receiver returns cost when the
// consumer takes an item, in CREDIT frames of at least W/4, and at once for
// the fragments of an unfinished item while no finished item waits (else an
// item larger than W could never finish). So a stalled consumer holds at
// most W of finished items plus one unfinished item (itself bounded by the
// maximum message size), and the sender's queue for that stream stays
// within W.

// ErrStreamClosed is returned by Recv after Close.
var ErrStreamClosed = errors.New("conn: stream closed")

// Stream is the dialer's side of a server-push stream.
type Stream struct {
	c      *Conn
	cl     *call
	ctx    context.Context
	notify chan struct{} // cap 1: an item or the end arrived

	mu       sync.Mutex
	stop     func() bool // unregisters the ctx watcher; nil once ended
	items    []streamItem
	head     int
	partial  []byte // the unfinished item being reassembled
	inPart   bool
	partCost int // cost of partial's fragments not yet credited
	held     int // cost received and not yet credited
	toCredit int // cost to return in the next CREDIT
	err      error
	waiting  bool // Recv is blocked: the next item or the end must notify
}

type streamItem struct {
	data   []byte
	charge int
}

// OpenStream opens a server-push stream of method with request req. The
// stream lives until the server ends it, ctx ends, or Close. Its deadline
// travels to the handler.
//
// The result is a *Stream; it is returned as a hawser.RawStream so that a
// Conn and a pool.Peer are interchangeable hawser.Callers.
func (c *Conn) OpenStream(ctx context.Context, method uint64, req []byte, opts ...hawser.CallOption) (hawser.RawStream, error) {
	o := hawser.Apply(opts)
	s := &Stream{c: c, ctx: ctx, notify: make(chan struct{}, 1)}
	cl := &call{stream: s, done: make(chan struct{}), closes: true}
	s.cl = cl
	if err := c.start(ctx, cl, method, req, &o, codec.FlagStream); err != nil {
		return nil, err
	}
	// The loop may already have ended the stream (its end reads s.stop).
	stop := context.AfterFunc(ctx, func() { s.cancel(ctx.Err()) })
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		stop()
	} else {
		s.stop = stop
		s.mu.Unlock()
	}
	return s, nil
}

// Recv returns the next item, which the caller owns. At the end of the
// stream it returns io.EOF; if the handler failed, its *hawser.RemoteError;
// if the connection failed, a *hawser.TransportError; if ctx ended,
// ctx.Err().
func (s *Stream) Recv() ([]byte, error) {
	for {
		s.mu.Lock()
		if s.head < len(s.items) {
			it := s.items[s.head]
			s.items[s.head] = streamItem{}
			s.head++
			if s.head == len(s.items) {
				s.items, s.head = s.items[:0], 0
				// Caught up: the unfinished item's fragments may flow now.
				s.toCredit += s.partCost
				s.partCost = 0
			}
			s.toCredit += it.charge
			credit := s.takeCreditLocked(false)
			s.mu.Unlock()
			s.sendCredit(credit, false)
			return it.data, nil
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return nil, err
		}
		s.waiting = true
		s.mu.Unlock()
		select {
		case <-s.notify:
		case <-s.ctx.Done():
			s.cancel(s.ctx.Err())
		}
	}
}

// takeCreditLocked returns the cost to credit now (0 for none): at least a
// quarter window, or everything when force is set.
func (s *Stream) takeCreditLocked(force bool) int {
	if s.toCredit == 0 || (!force && s.toCredit < int(s.c.cfg.StreamWindow)/4) || s.err != nil {
		return 0
	}
	n := s.toCredit
	s.toCredit = 0
	s.held -= n
	return n
}

func (s *Stream) sendCredit(n int, fromLoop bool) {
	if n > 0 {
		s.c.queueControl(codec.Header{Kind: codec.KindCredit, ID: s.cl.id, Arg: uint32(n)}, fromLoop)
	}
}

// Close cancels the stream if it has not ended (the server's handler sees
// its context cancelled) and makes further Recv calls fail.
func (s *Stream) Close() error {
	s.cancel(ErrStreamClosed)
	return nil
}

// cancel ends the stream locally: items not yet received are dropped, and
// Recv fails from now on. The items are dropped and the error set in one
// critical section, so that no item the loop delivers meanwhile is
// returned after it. abandon is false when the loop is ending the stream
// at the same moment; the stream ends here all the same.
func (s *Stream) cancel(err error) {
	s.c.abandon(s.cl)
	s.mu.Lock()
	clear(s.items)
	s.items, s.head = s.items[:0], 0
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.end(err)
}

// end records the end of the stream; Recv returns queued items first.
func (s *Stream) end(err error) {
	if err == nil {
		err = io.EOF
	}
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.partial = nil
	stop := s.stop
	s.stop = nil
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// onFrame takes one STREAM_ITEM or CONTINUATION frame's payload (aliasing
// the read buffer) on the loop. cost is its flow-control cost; last is false
// while more fragments of the item follow.
func (s *Stream) onFrame(first, last bool, payload []byte, cost int) error {
	s.mu.Lock()
	if s.err != nil { // ended or closed here; frames in flight are dropped
		s.mu.Unlock()
		return nil
	}
	s.held += cost
	if s.held > int(s.c.cfg.StreamWindow) {
		s.mu.Unlock()
		return fmt.Errorf("%w: stream %d exceeded its window (%d > %d)", codec.ErrBadFrame, s.cl.id, s.held, s.c.cfg.StreamWindow)
	}
	if first == s.inPart {
		s.mu.Unlock()
		return fmt.Errorf("%w: stream %d fragment out of sequence", codec.ErrBadFrame, s.cl.id)
	}
	var credit int
	switch {
	case first && last:
		s.items = append(s.items, streamItem{data: append([]byte(nil), payload...), charge: cost})
	case last:
		if len(s.partial)+len(payload) > int(s.c.cfg.MaxMessageSize) {
			s.mu.Unlock()
			return fmt.Errorf("%w: stream %d item", codec.ErrMessageTooLarge, s.cl.id)
		}
		s.items = append(s.items, streamItem{data: appendCapped(s.partial, payload, int(s.c.cfg.MaxMessageSize)), charge: s.partCost + cost})
		s.partial, s.partCost, s.inPart = nil, 0, false
	default:
		if len(s.partial)+len(payload) > int(s.c.cfg.MaxMessageSize) {
			s.mu.Unlock()
			return fmt.Errorf("%w: stream %d item", codec.ErrMessageTooLarge, s.cl.id)
		}
		s.partial = appendCapped(s.partial, payload, int(s.c.cfg.MaxMessageSize))
		s.inPart = true
		if s.head == len(s.items) {
			s.toCredit += cost
			credit = s.takeCreditLocked(false)
		} else {
			s.partCost += cost
		}
	}
	wake := last && s.waiting
	if wake {
		s.waiting = false
	}
	s.mu.Unlock()
	s.sendCredit(credit, true)
	if wake {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
	return nil
}

// Buffered returns the bytes of finished items waiting for Recv and the
// flow-control cost not yet credited back to the sender.
func (s *Stream) Buffered() (bytes, uncredited int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range s.items[s.head:] {
		bytes += len(it.data)
	}
	return bytes + len(s.partial), s.held
}

// onStreamFrame routes a stream frame on the loop to its Stream. The loop
// remembers the last stream it delivered to, saving the pending lookup per
// item; call IDs are never reused, and a stream that has ended or been
// closed drops what still arrives, as a lookup miss would.
func (c *Conn) onStreamFrame(f codec.Frame, first bool) error {
	cl := c.lastStream
	if cl == nil || cl.id != f.ID {
		c.mu.Lock()
		cl = c.pending[f.ID]
		c.mu.Unlock()
		if cl == nil {
			return nil // cancelled here; frames already in flight are dropped
		}
		if cl.stream == nil {
			return fmt.Errorf("%w: stream frame for unary call %d", codec.ErrBadFrame, f.ID)
		}
		c.lastStream = cl
	}
	payload := f.Body
	if f.Flags&codec.FlagCompressed != 0 {
		p, err := c.decompress(payload)
		if err != nil {
			return err
		}
		payload = p
	}
	return cl.stream.onFrame(first, f.Flags&codec.FlagMore == 0, payload, itemCost(len(f.Body)))
}

// ErrStreamEnded is returned by ServerStream.Send once the stream's handler
// has returned.
var ErrStreamEnded = errors.New("conn: stream handler has returned")

// ServerStream is the acceptor's side of a stream: the handler sends items
// with Send, within the consumer's window. It is valid until the handler
// returns; after that Send fails with ErrStreamEnded.
type ServerStream struct {
	sc     *serverCall   // valid while the handler runs or a Send is active
	credit chan struct{} // cap 1: window grew
	limit  int           // the consumer's window W

	mu     sync.Mutex
	window int // cost the consumer still allows
	sent   int64
	ended  bool          // the handler returned: no new Send
	active int           // Sends in progress
	idle   chan struct{} // made by end; closed when active drops to 0
}

// Send sends one item. It blocks while the consumer's window is used up
// (a consumer that stops reading stalls only its own stream), and fails when
// the stream is cancelled, its deadline passes, the connection closes, or
// the handler has returned. item is copied before Send returns.
func (s *ServerStream) Send(item []byte) error {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return ErrStreamEnded
	}
	s.active++
	s.mu.Unlock()
	defer s.leave()

	sc := s.sc
	c := sc.c
	ctx := sc.ctx
	if len(item) > int(c.peer.maxMessage) {
		return ErrMessageTooLarge
	}
	frag := min(c.fragSize, s.limit/2-codec.HeaderSize)
	first := true
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(len(item), frag)
		part := item[:n]
		item = item[n:]
		h := codec.Header{Kind: codec.KindStreamItem, ID: sc.id}
		if !first {
			h.Kind = codec.KindContinuation
		}
		if len(item) > 0 {
			h.Flags |= codec.FlagMore
		}
		body, scratch := c.maybeCompress(part)
		if scratch != nil {
			h.Flags |= codec.FlagCompressed
		}
		err := s.acquire(ctx, itemCost(len(body)), len(item) == 0)
		if err == nil {
			err = c.queueFrameCtx(ctx, h, nil, body, false, false, true)
		}
		putScratch(scratch)
		if err != nil {
			return err
		}
		first = false
		if len(item) == 0 {
			return nil
		}
	}
}

func (s *ServerStream) leave() {
	s.mu.Lock()
	s.active--
	if s.active == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	s.mu.Unlock()
}

// end runs when the handler returned, before its STREAM_END or ERROR is
// queued: later Sends fail, and a Send still in progress (from a goroutine
// the handler left behind) is cancelled and waited for, so that no item
// follows the end and none reaches a recycled call.
func (s *ServerStream) end() {
	s.mu.Lock()
	s.ended = true
	var wait chan struct{}
	if s.active > 0 {
		s.idle = make(chan struct{})
		wait = s.idle
	}
	s.mu.Unlock()
	if wait != nil {
		s.sc.ctx.cancel(context.Canceled)
		<-wait
	}
}

// acquire takes cost from the window, waiting for CREDIT; last counts the
// item as sent.
func (s *ServerStream) acquire(ctx context.Context, cost int, last bool) error {
	for {
		s.mu.Lock()
		if s.window >= cost {
			s.window -= cost
			if last {
				s.sent++
			}
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		select {
		case <-s.credit:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Outstanding is the flow-control cost sent and not yet credited back: the
// most this stream can have queued or in flight toward its consumer.
func (s *ServerStream) Outstanding() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit - s.window
}

// Sent is the number of items sent.
func (s *ServerStream) Sent() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

// grant adds a CREDIT's increment on the loop.
func (s *ServerStream) grant(id, n uint32) error {
	s.mu.Lock()
	s.window += int(n)
	over := s.window > s.limit
	s.mu.Unlock()
	if over {
		return fmt.Errorf("%w: CREDIT beyond the stream window on %d", codec.ErrBadFrame, id)
	}
	select {
	case s.credit <- struct{}{}:
	default:
	}
	return nil
}
