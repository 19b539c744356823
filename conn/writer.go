package conn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hawser-rpc/hawser/codec"
)

// gnetHigh bounds the bulk bytes a flush leaves in gnet's outbound buffer,
// which is unbounded: above it, bulk frames stay in our queue, where urgent
// frames can still overtake them (PROTOCOL.md §9).
const gnetHigh = 256 << 10

// writeQueue holds frames waiting to be written, in two priorities, and the
// outcomes of finished calls that wait for room. Any goroutine appends
// (under mu). One writer at a time takes, encrypts and writes: the loop's
// flush (flushing), or the goroutine that queued a frame when nothing else
// was queued, being written or held by gnet (direct: see writeDirect), so a
// lone caller or handler writes the socket itself instead of waking the
// loop. The writer owns Conn.batch, Conn.wout and Conn.iov.
//
// Bounds (PROTOCOL.md §9): a bulk message writer waits while the queued
// bytes (both queues plus what gnet held at the last flush) reach hwm; an
// urgent one while they reach 2*hwm, so urgent messages still pass a full
// bulk backlog; header-only control frames and frames the loop queues never
// wait (instead, the loop stops reading a peer whose input makes it queue
// output at twice the mark: Conn.paused).
type writeQueue struct {
	mu        sync.Mutex
	urgent    chunks
	normal    chunks
	gnetOut   int           // bytes gnet held at the last flush
	scheduled bool          // a flush task is queued on the loop
	flushing  bool          // the loop's flush is the writer
	direct    bool          // a goroutine other than the loop is the writer
	wantFlush bool          // a flush found a direct writer and left it the rest
	fd        int           // the socket, for direct writes; set by onOpen
	directOff bool          // direct writes are disabled (Config.LoopWrites)
	directEnd chan struct{} // closed when the direct writer is done (close waits)
	err       error         // set when the connection closed
	space     chan struct{} // closed when the queue falls below half of hwm
	hwm       int
	// outbox holds, in order, the calls (acceptor) whose outcome found no
	// room; the loop sends them as room appears. Index 1 is urgent. They
	// stay in Conn.inflight and keep their MaxCalls slot until their last
	// frame is queued, so MaxCalls bounds the outbox.
	outbox [2][]*serverCall
}

func (q *writeQueue) queuedLocked() int {
	return q.urgent.size + q.normal.size + q.gnetOut
}

// roomLocked reports whether a message writer of the class may queue.
func (q *writeQueue) roomLocked(urgent bool) bool {
	limit := q.hwm
	if urgent {
		limit *= 2
	}
	return q.queuedLocked() < limit
}

// idleLocked reports whether nothing waits to be written, here or in gnet.
func (q *writeQueue) idleLocked() bool {
	return q.queuedLocked() == 0 && len(q.outbox[0]) == 0 && len(q.outbox[1]) == 0 && !q.direct
}

// wakeLocked releases writers waiting for space once the queue is below half
// the high-water mark.
func (q *writeQueue) wakeLocked() {
	if q.space != nil && q.queuedLocked() < q.hwm/2 {
		close(q.space)
		q.space = nil
	}
}

// close fails the queue: writers get err. It waits for a direct writer to
// finish (it never waits on the loop, and close runs there, in onClose,
// before gnet closes the descriptor, which so is never written after it may
// have been reused). It returns the calls that were waiting in the outbox,
// for the caller to release.
func (q *writeQueue) close(err error) []*serverCall {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.err = err
	for q.direct {
		if q.directEnd == nil {
			q.directEnd = make(chan struct{})
		}
		end := q.directEnd
		q.mu.Unlock()
		<-end
		q.mu.Lock()
	}
	q.urgent.release()
	q.normal.release()
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
	parked := append(q.outbox[0], q.outbox[1]...)
	q.outbox = [2][]*serverCall{}
	return parked
}

// waitSpaceLocked waits, with q.mu held on entry and on return, until a
// writer of the class has room, the connection closes, or ctx ends.
func (c *Conn) waitSpaceLocked(ctx context.Context, urgent bool) error {
	q := &c.wq
	for q.err == nil && !q.roomLocked(urgent) {
		if q.space == nil {
			q.space = make(chan struct{})
		}
		space := q.space
		q.mu.Unlock()
		var err error
		select {
		case <-space: // also closed when the connection closes
		case <-ctx.Done():
			err = ctx.Err()
		}
		q.mu.Lock()
		if err != nil {
			return err
		}
	}
	return q.err
}

// queueFrame appends one frame whose body is prefix followed by payload and
// makes sure a flush will run. urgent frames go ahead of bulk frames.
// fromLoop is true when called on the loop, which flushes before it
// returns to gnet, so no task needs queuing. It never waits.
func (c *Conn) queueFrame(h codec.Header, prefix, payload []byte, urgent, fromLoop bool) error {
	return c.queueFrameCtx(context.Background(), h, prefix, payload, urgent, fromLoop, false)
}

// queueFrameCtx is queueFrame that, with wait set (and not on the loop),
// first waits while the writer's class has no room (push back) until ctx
// ends or the connection closes.
func (c *Conn) queueFrameCtx(ctx context.Context, h codec.Header, prefix, payload []byte, urgent, fromLoop, wait bool) error {
	q := &c.wq
	q.mu.Lock()
	if wait && !fromLoop {
		if err := c.waitSpaceLocked(ctx, urgent); err != nil {
			q.mu.Unlock()
			return err
		}
	} else if q.err != nil {
		err := q.err
		q.mu.Unlock()
		return err
	}
	c.writeFrameLocked(h, prefix, payload, urgent)
	if fromLoop && h.Kind != codec.KindCredit {
		c.noteLoopOutputLocked()
	}
	k := c.kickLocked(fromLoop, h.Kind != codec.KindStreamItem && h.Kind != codec.KindCredit)
	q.mu.Unlock()
	c.kick(k)
	return nil
}

// writeFrameLocked appends one frame to a queue; c.wq.mu is held.
func (c *Conn) writeFrameLocked(h codec.Header, prefix, payload []byte, urgent bool) {
	h.Length = uint32(len(prefix) + len(payload))
	var hb [codec.HeaderSize]byte
	codec.PutHeader(hb[:], h)
	dst := &c.wq.normal
	if urgent {
		dst = &c.wq.urgent
	}
	dst.write(hb[:])
	dst.write(prefix)
	dst.write(payload)
	dst.endFrame()
}

// noteLoopOutputLocked records, on the loop with c.wq.mu held, that the
// frame being handled made the loop queue output while the unsent output
// is at twice the mark: bulk writers and parked outcomes stop at the
// mark, urgent messages at twice it, so only output the loop itself
// produces gets there, and parse then pauses the peer's input (§9). A
// CREDIT never counts: it is bounded by the stream data received.
func (c *Conn) noteLoopOutputLocked() {
	if c.wq.queuedLocked() >= 2*c.wq.hwm {
		c.loopOver = true
	}
}

// triggerLocked reports whether the caller must schedule a flush after
// unlocking c.wq.mu (none is scheduled and the caller is not the loop).
func (c *Conn) triggerLocked(fromLoop bool) bool {
	if fromLoop || c.wq.scheduled {
		return false
	}
	c.wq.scheduled = true
	return true
}

// A kick is who writes a frame just queued: nobody new (the loop is about
// to flush, a flush is scheduled, or a direct writer will take it), a flush
// task on the loop, or the goroutine that queued it (writeDirect).
type kick uint8

const (
	kickNone kick = iota
	kickLoop
	kickDirect
)

// kickLocked decides, with c.wq.mu held after queuing a frame, who writes
// it; kickDirect makes the caller the writer. mayDirect is false for frames
// that come in runs (stream items, credits), which the loop batches.
func (c *Conn) kickLocked(fromLoop, mayDirect bool) kick {
	q := &c.wq
	switch {
	case fromLoop || q.scheduled || q.direct:
		return kickNone
	case mayDirect && c.directOKLocked():
		q.direct = true
		return kickDirect
	default:
		q.scheduled = true
		return kickLoop
	}
}

// directOKLocked reports whether a goroutine may write the socket itself:
// the call is the only one in flight on the connection (with more, frames
// queue up and one flush of the loop writes them together, which is where
// throughput under load comes from), the loop is not writing, gnet holds
// nothing (its buffer only grows in a flush, so gnetOut == 0 stays true
// until the next one), no outcome is parked (the loop sends those), and no
// close has started (the loop ends the write side).
func (c *Conn) directOKLocked() bool {
	q := &c.wq
	return q.fd > 0 && !q.directOff && c.lone() && !q.flushing && q.gnetOut == 0 &&
		len(q.outbox[0])+len(q.outbox[1]) == 0 && q.err == nil && !c.closing.Load()
}

// lone reports whether at most one call or stream is in flight: for a
// dialer, in pending (the caller's own); for an acceptor, holding a slot
// (a call's slot is freed before its outcome is queued).
func (c *Conn) lone() bool {
	if c.dialer {
		return c.npending.Load() <= 1
	}
	return c.callSlots.Load() <= 1
}

// kick acts on k after c.wq.mu is released.
func (c *Conn) kick(k kick) {
	switch k {
	case kickLoop:
		c.scheduleFlush()
	case kickDirect:
		c.writeDirect()
	}
}

// directRounds bounds how many times a direct writer goes back for frames
// that others queued while it wrote; then the loop takes over, so no caller
// is kept writing for others under load.
const directRounds = 2

// writeDirect runs on the goroutine that became the writer in kickLocked:
// it takes the queue as a flush would (urgent first; bulk up to gnetHigh),
// encrypts it and writes the socket with writev, without waking the loop.
// What the socket does not take (would block) stays in c.wout for the
// loop's flush, which hands it to gnet before anything else, so the byte
// order on the wire is the order of encryption. The loop's flush runs
// instead whenever anything is left for it.
func (c *Conn) writeDirect() {
	q := &c.wq
	q.mu.Lock()
	for round := 0; q.err == nil; round++ {
		q.urgent.takeInto(&c.batch, 1<<62)
		q.normal.takeInto(&c.batch, gnetHigh)
		q.wakeLocked()
		q.mu.Unlock()
		c.seal()
		c.directWrites.Add(1)
		written := c.writeSocket()
		if !written {
			c.directLeft.Add(1)
		}
		q.mu.Lock()
		if !written || round+1 >= directRounds || q.urgent.size+q.normal.size == 0 {
			break
		}
	}
	trigger := false
	if q.err == nil && !q.scheduled && (q.wantFlush || c.wout.size > 0 || q.urgent.size+q.normal.size > 0 ||
		c.drainWatch.Load() || c.closing.Load()) {
		q.scheduled = true
		trigger = true
	}
	q.wantFlush = false
	q.direct = false
	if q.directEnd != nil {
		close(q.directEnd)
		q.directEnd = nil
	}
	q.mu.Unlock()
	if trigger {
		c.scheduleFlush()
	}
}

// seal moves the plaintext in c.batch, encrypted when TLS is on, to the end
// of c.wout, after any records the loop's reads made crypto/tls write (a
// KeyUpdate). The writer calls it.
func (c *Conn) seal() {
	if c.tc == nil {
		c.batch.takeInto(&c.wout, 1<<62)
		return
	}
	for _, b := range c.batch.bufs {
		// The transport never fails a write while open: records land in
		// c.tr.out (see transport.Write).
		_, _ = c.tc.Write(*b)
	}
	c.batch.release()
	c.tr.take(&c.wout)
}

// writeSocket writes c.wout to the non-blocking socket, as a direct writer.
// It reports whether all of it was written; what was not stays in c.wout.
// A socket error closes the connection (on the loop).
func (c *Conn) writeSocket() bool {
	for c.wout.size > 0 {
		c.iov = c.iov[:0]
		for _, b := range c.wout.bufs {
			c.iov = append(c.iov, *b)
		}
		n, err := writev(c.wq.fd, c.iov, c.wout.size)
		clear(c.iov)
		if n > 0 {
			c.wout.discard(n)
		}
		switch {
		case err == nil || errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN):
			return false
		default:
			c.closeWith(fmt.Errorf("%w: %w", ErrPeerClosed, err), codec.CodeOK)
			return false
		}
	}
	return true
}

// rawWriteMax is the largest direct write made without telling the
// scheduler (see writev).
const rawWriteMax = 64 << 10

// writev writes iov (size bytes) to the non-blocking socket fd. Up to
// rawWriteMax it uses a raw system call, which the scheduler does not see:
// a non-blocking writev never sleeps, but on loopback it runs the peer's
// receive path and its wake-up, long enough (tens of µs in a VM) for the
// scheduler to hand the P to another thread when a goroutine is runnable —
// with GOMAXPROCS 1, the event loop that just woke this goroutine — which
// costs two thread switches. Larger writes go through the scheduler.
func writev(fd int, iov [][]byte, size int) (int, error) {
	if size > rawWriteMax || len(iov) > 8 {
		return unix.Writev(fd, iov)
	}
	var vec [8]unix.Iovec
	k := 0
	for _, b := range iov {
		if len(b) == 0 {
			continue
		}
		vec[k].Base = &b[0]
		vec[k].SetLen(len(b))
		k++
	}
	if k == 0 {
		return 0, nil
	}
	n, _, errno := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&vec[0])), uintptr(k))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// queueControl queues a header-only control frame (PING, PONG, CANCEL,
// CREDIT, GOAWAY) ahead of bulk data.
func (c *Conn) queueControl(h codec.Header, fromLoop bool) {
	_ = c.queueFrame(h, nil, nil, true, fromLoop)
}

// scheduleFlush queues a flush task on the loop.
func (c *Conn) scheduleFlush() {
	if err := c.gc.Execute(context.Background(), c); err != nil {
		c.wq.mu.Lock()
		c.wq.scheduled = false
		c.wq.mu.Unlock()
	}
}

// flush runs on the loop: it moves parked outcomes into the queues while
// there is room, then queued plaintext (urgent first, then bulk while gnet
// holds less than gnetHigh) through TLS into pooled ciphertext chunks, and
// writes them with one Writev. It also notes write progress (for the stall
// timeout), lifts a pause on input once the output has drained, completes
// a drain, and ends the write side of a lingering close.
func (c *Conn) flush() {
	if c.dead || c.gc == nil || c.finSent {
		return
	}
	q := &c.wq
	q.mu.Lock()
	if c.leaveToDirectLocked() {
		return
	}
	q.mu.Unlock()
	held := c.gc.OutboundBuffered()
	c.noteProgress(held)
	q.mu.Lock()
	q.gnetOut = held
	if len(q.outbox[0])+len(q.outbox[1]) > 0 {
		q.mu.Unlock() // deliver takes q.mu (and c.mu) itself
		c.sendParked()
		q.mu.Lock()
	}
	if c.leaveToDirectLocked() { // a goroutine became the writer while q.mu was released
		return
	}
	q.scheduled = false
	q.urgent.takeInto(&c.batch, 1<<62)
	budget := gnetHigh - held
	if c.closing.Load() {
		budget = 1 << 62 // closing: everything queued goes out now
	}
	if budget > 0 {
		q.normal.takeInto(&c.batch, budget)
	}
	more := q.normal.size > 0 || len(q.outbox[0])+len(q.outbox[1]) > 0
	// The loop is the writer only when it has something to write, so a
	// caller woken by this very pass of the loop can still write directly.
	write := c.batch.size > 0 || c.wout.size > 0 || c.tr.pending()
	q.flushing = write
	q.mu.Unlock()

	if write {
		c.seal()
		if c.wout.size > 0 {
			c.iov = c.iov[:0]
			for _, b := range c.wout.bufs {
				c.iov = append(c.iov, *b)
			}
			_, _ = c.gc.Writev(c.iov) // on error gnet closes the conn and runs onClose
			clear(c.iov)
			c.wout.release()
		}
	}
	if c.dead {
		q.mu.Lock()
		q.flushing = false
		q.mu.Unlock()
		return
	}
	held = c.gc.OutboundBuffered()
	c.lastHeld = held
	q.mu.Lock()
	q.flushing = false
	q.gnetOut = held
	q.wakeLocked()
	idle := q.idleLocked()
	drainedInput := q.queuedLocked() < q.hwm+q.hwm/2
	q.mu.Unlock()
	if c.paused && drainedInput {
		c.paused = false
		c.resumed = true
	}
	if more || held > 0 {
		c.armDrain()
	}
	if idle {
		if c.drainWatch.Load() {
			c.mu.Lock()
			c.checkDrainedLocked()
			c.mu.Unlock()
		}
		if c.lingering {
			// Everything is in the kernel: FIN after it, then wait for the
			// peer's close (or the linger bound) so that a late frame from
			// the peer cannot make the kernel reset the connection and drop
			// what it has not sent yet.
			c.finSent = true
			_ = syscall.Shutdown(c.gc.Fd(), syscall.SHUT_WR)
		}
	}
}

// leaveToDirectLocked, in flush with c.wq.mu held, reports whether a
// goroutine is the writer; if so it unlocks c.wq.mu and the flush ends.
// That writer takes what is queued and, on leaving, schedules a flush if
// frames remain, a drain is watched or a close started; what else needs
// this flush (a flush that was asked for, parked outcomes, a pause to
// lift) is handed over through wantFlush. gnet holds nothing: direct
// writes need that.
func (c *Conn) leaveToDirectLocked() bool {
	q := &c.wq
	if !q.direct {
		return false
	}
	if q.scheduled || len(q.outbox[0])+len(q.outbox[1]) > 0 || c.paused {
		q.scheduled = false
		q.wantFlush = true
	}
	q.mu.Unlock()
	return true
}

// noteProgress records, on the loop, whether gnet wrote anything since the
// last flush: held bytes that did not shrink start the stall clock that
// tick checks against WriteStallTimeout.
func (c *Conn) noteProgress(held int) {
	if held > 0 && held >= c.lastHeld {
		if c.stallSince.Load() == 0 {
			c.stallSince.Store(time.Now().UnixNano())
		}
	} else if c.stallSince.Load() != 0 {
		c.stallSince.Store(0)
	}
}

// drainPoll is how soon a flush runs again while gnet still holds bytes or
// bulk frames wait in the queue. gnet has no "drained" callback; any frame
// received also flushes.
const drainPoll = 500 * time.Microsecond

// armDrain schedules one flush after drainPoll, unless one is armed. Only
// the goroutine that wins drainArm touches drainTimer.
func (c *Conn) armDrain() {
	if !c.drainArm.CompareAndSwap(false, true) {
		return
	}
	if c.drainTimer == nil {
		c.drainTimer = time.AfterFunc(drainPoll, c.drainFire)
	} else {
		c.drainTimer.Reset(drainPoll)
	}
}

func (c *Conn) drainFire() {
	c.drainArm.Store(false)
	c.wq.mu.Lock()
	trigger := !c.wq.scheduled && c.wq.err == nil
	if trigger {
		c.wq.scheduled = true
	}
	c.wq.mu.Unlock()
	if trigger {
		c.scheduleFlush()
	}
}

// outMsg is a message being sent as a first frame and CONTINUATIONs
// (§3.6): a CALL from a caller, or the outcome of a served call.
type outMsg struct {
	h       codec.Header
	prefix  []byte // the CALL prefix, in the first frame only
	payload []byte
	off     int  // payload bytes queued so far
	started bool // the first frame is queued
}

// nextFrame returns m's next frame: header, prefix (first frame only) and
// body, compressed into scratch (which the caller puts back) when both
// sides announced s2 and it pays; n is the payload bytes it carries.
// ERROR and STREAM_END are single, uncompressed frames (§3.2).
func (c *Conn) nextFrame(m *outMsg) (h codec.Header, prefix, body []byte, scratch *[]byte, n int, last bool) {
	h = m.h
	if h.Kind == codec.KindError || h.Kind == codec.KindStreamEnd {
		return h, nil, m.payload, nil, len(m.payload), true
	}
	n = min(len(m.payload)-m.off, c.fragSize)
	frag := m.payload[m.off : m.off+n]
	last = m.off+n == len(m.payload)
	if m.started {
		h = codec.Header{Kind: codec.KindContinuation, ID: m.h.ID}
	} else {
		prefix = m.prefix
	}
	if !last {
		h.Flags |= codec.FlagMore
	}
	body, scratch = c.maybeCompress(frag)
	if scratch != nil {
		h.Flags |= codec.FlagCompressed
	}
	return h, prefix, body, scratch, n, last
}

func (m *outMsg) advance(n int) {
	m.off += n
	m.started = true
}

// sendMessage sends a CALL as a first frame and as many CONTINUATION
// frames as it takes, each waiting for room in the queue (push back) until
// ctx ends. Fragments of different messages interleave, so a large message
// never holds the queue.
func (c *Conn) sendMessage(ctx context.Context, h codec.Header, prefix, payload []byte, urgent bool) error {
	if len(payload) > int(c.peer.maxMessage) {
		return ErrMessageTooLarge
	}
	m := outMsg{h: h, prefix: prefix, payload: payload}
	for {
		fh, pre, body, scratch, n, last := c.nextFrame(&m)
		err := c.queueFrameCtx(ctx, fh, pre, body, urgent, false, true)
		if scratch != nil {
			putBuf(scratch)
		}
		if err != nil {
			if m.started {
				// Abandon the message the peer is reassembling; in the same
				// queue, so the CANCEL follows the fragments already queued.
				_ = c.queueFrame(codec.Header{Kind: codec.KindCancel, ID: h.ID}, nil, nil, urgent, false)
			}
			return err
		}
		m.advance(n)
		if last {
			return nil
		}
	}
}

// maybeCompress returns the s2 encoding of p in a pooled buffer (which the
// caller puts back) when compression is on, p is large enough and the
// encoding is smaller; otherwise p and nil.
func (c *Conn) maybeCompress(p []byte) ([]byte, *[]byte) {
	if !c.compress || len(p) < c.cfg.CompressThreshold {
		return p, nil
	}
	buf := getBuf(codec.MaxCompressedLen(len(p)))
	out, ok := codec.Compress(*buf, p)
	if !ok {
		putBuf(buf)
		return p, nil
	}
	return out, buf
}
