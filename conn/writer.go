package conn

import (
	"context"
	"sync"
	"time"

	"github.com/hawser-rpc/hawser/codec"
)

// gnetHigh bounds the bytes a flush leaves in gnet's outbound buffer, which
// is unbounded: above it, bulk frames stay in our queue, where urgent frames
// can still overtake them (PROTOCOL.md §9).
const gnetHigh = 256 << 10

// writeQueue holds frames waiting for the loop's next flush, in two
// priorities. Any goroutine appends (under mu); only the loop takes.
type writeQueue struct {
	mu        sync.Mutex
	urgent    chunks
	normal    chunks
	gnetOut   int           // bytes gnet held after the last flush
	scheduled bool          // a flush task is queued on the loop
	err       error         // set when the connection closed
	space     chan struct{} // closed when the queue falls below the low-water mark
	hwm       int
}

func (q *writeQueue) queuedLocked() int {
	return q.urgent.size + q.normal.size + q.gnetOut
}

// wakeLocked releases writers waiting for space once the queue is below half
// the high-water mark.
func (q *writeQueue) wakeLocked() {
	if q.space != nil && q.queuedLocked() < q.hwm/2 {
		close(q.space)
		q.space = nil
	}
}

func (q *writeQueue) close(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.err = err
	q.urgent.release()
	q.normal.release()
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
}

// waitSpaceLocked waits, with q.mu held on entry and on return, until the
// queue is below the high-water mark, the connection closes, or ctx ends.
func (c *Conn) waitSpaceLocked(ctx context.Context) error {
	q := &c.wq
	for q.err == nil && q.queuedLocked() >= q.hwm {
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
// makes sure a flush will run. urgent frames go ahead of bulk frames and
// never wait for space. fromLoop is true when called on the loop, which
// flushes before it returns to gnet, so no task needs queuing.
func (c *Conn) queueFrame(h codec.Header, prefix, payload []byte, urgent, fromLoop bool) error {
	return c.queueFrameCtx(context.Background(), h, prefix, payload, urgent, fromLoop, false)
}

// queueFrameCtx is queueFrame that, with wait set, first waits while the
// queue is above the high-water mark (push back) until ctx ends or the
// connection closes. Urgent frames and frames queued on the loop never
// wait.
func (c *Conn) queueFrameCtx(ctx context.Context, h codec.Header, prefix, payload []byte, urgent, fromLoop, wait bool) error {
	h.Length = uint32(len(prefix) + len(payload))
	var hb [codec.HeaderSize]byte
	codec.PutHeader(hb[:], h)
	q := &c.wq
	q.mu.Lock()
	if wait && !urgent && !fromLoop {
		if err := c.waitSpaceLocked(ctx); err != nil {
			q.mu.Unlock()
			return err
		}
	} else if q.err != nil {
		err := q.err
		q.mu.Unlock()
		return err
	}
	dst := &q.normal
	if urgent {
		dst = &q.urgent
	}
	dst.write(hb[:])
	dst.write(prefix)
	dst.write(payload)
	dst.endFrame()
	trigger := !fromLoop && !q.scheduled
	if trigger {
		q.scheduled = true
	}
	q.mu.Unlock()
	if trigger {
		c.scheduleFlush()
	}
	return nil
}

// queueControl queues a header-only control frame (PING, PONG, CANCEL,
// CREDIT, GOAWAY) ahead of bulk data.
func (c *Conn) queueControl(h codec.Header, fromLoop bool) {
	_ = c.queueFrame(h, nil, nil, true, fromLoop)
}

// scheduleFlush queues a flush task on the loop.
func (c *Conn) scheduleFlush() {
	if err := c.loop.Execute(context.Background(), c); err != nil {
		c.wq.mu.Lock()
		c.wq.scheduled = false
		c.wq.mu.Unlock()
	}
}

// flush runs on the loop: it moves queued plaintext (urgent first, then
// bulk while gnet holds less than gnetHigh) through TLS into pooled
// ciphertext chunks and writes them with one Writev.
func (c *Conn) flush() {
	if c.dead || c.gc == nil {
		return
	}
	q := &c.wq
	held := c.gc.OutboundBuffered()
	q.mu.Lock()
	q.scheduled = false
	q.urgent.takeInto(&c.batch, 1<<62)
	budget := gnetHigh - held
	if c.closing.Load() {
		budget = 1 << 62 // closing: everything queued goes out now
	}
	if budget > 0 {
		q.normal.takeInto(&c.batch, budget)
	}
	more := q.normal.size > 0
	q.gnetOut = held
	q.mu.Unlock()

	src := &c.batch
	if c.tc != nil {
		for _, b := range c.batch.bufs {
			// The transport never fails a write while open: records land in
			// c.tr.out (see transport.Write).
			_, _ = c.tc.Write(*b)
		}
		c.batch.release()
		src = &c.tr.out
	}
	if src.size > 0 {
		c.iov = c.iov[:0]
		for _, b := range src.bufs {
			c.iov = append(c.iov, *b)
		}
		_, _ = c.gc.Writev(c.iov) // on error gnet closes the conn and runs onClose
		clear(c.iov)
		src.release()
	}
	if c.dead {
		return
	}
	held = c.gc.OutboundBuffered()
	q.mu.Lock()
	q.gnetOut = held
	q.wakeLocked()
	q.mu.Unlock()
	if more || held > 0 {
		c.armDrain()
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

// sendMessage sends one message (CALL, REPLY or STREAM_ITEM) as a first
// frame and as many CONTINUATION frames as it takes, compressing each
// fragment when both sides announced s2. prefix (the CALL prefix) goes in
// the first frame only. Fragments of different messages interleave, so a
// large message never holds the queue. ctx bounds the waits for space.
func (c *Conn) sendMessage(ctx context.Context, h codec.Header, prefix, payload []byte, urgent, fromLoop bool) error {
	if len(payload) > int(c.peer.maxMessage) {
		return ErrMessageTooLarge
	}
	first := true
	for {
		n := min(len(payload), c.fragSize)
		frag := payload[:n]
		payload = payload[n:]
		fh := h
		if !first {
			fh = codec.Header{Kind: codec.KindContinuation, ID: h.ID}
		}
		if len(payload) > 0 {
			fh.Flags |= codec.FlagMore
		}
		body, scratch := c.maybeCompress(frag)
		if scratch != nil {
			fh.Flags |= codec.FlagCompressed
		}
		var err error
		if first {
			err = c.queueFrameCtx(ctx, fh, prefix, body, urgent, fromLoop, true)
		} else {
			err = c.queueFrameCtx(ctx, fh, nil, body, urgent, fromLoop, true)
		}
		if scratch != nil {
			putBuf(scratch)
		}
		if err != nil {
			if !first {
				// Abandon the message the peer is reassembling; in the same
				// queue, so the CANCEL follows the fragments already queued.
				_ = c.queueFrameCtx(context.Background(), codec.Header{Kind: codec.KindCancel, ID: h.ID}, nil, nil, urgent, fromLoop, false)
			}
			return err
		}
		first = false
		if len(payload) == 0 {
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
