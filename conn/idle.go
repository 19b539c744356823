package conn

import (
	"bytes"
	"crypto/tls"
	"reflect"
	"sync/atomic"
	"time"
	"unsafe"
)

// What an idle connection keeps (issue 8: at most 8 KiB on the accepting
// side). Between socket events a connection holds no read buffer of its
// own unless a frame is partial (readInput), gnet's per-connection buffers
// go back to gnet's pools when they empty, and the loop's read buffer is
// shared by every connection of the loop. What is left to release once a
// connection has gone quiet:
//
//   - crypto/tls's receive buffers. A tls.Conn keeps the largest record it
//     has read (rawInput, a bytes.Buffer that grows to a full 16 KiB record
//     and never shrinks: about 40 KiB after a 64 KiB call) and the
//     largest handshake message (hand: the ClientHello on the acceptor,
//     the certificate on the dialer). crypto/tls has no API to drop them;
//     releaseTLSInput does it through the fields' offsets, looked up by
//     name and type once (tlsInput), and only when they hold no bytes.
//     With another layout it does nothing, and TestIdleReleasesBuffers
//     fails, so an upgrade of Go that changes them is noticed.
//   - the per-connection maps, queues and slices that keep the capacity
//     their busiest moment gave them;
//   - the read buffer of a partial frame, a whole 64 KiB chunk for a few
//     bytes: compactReadBuf moves them to the smallest size class.
//
// When: tick (on the timer goroutine) finds the connection quiet for a
// whole tick interval (no call in flight, started or ended; or nothing
// received at all) and queues releaseIdle on the loop: the connection is
// then lean. Keepalive frames (PING, PONG) on a lean connection make
// crypto/tls allocate a small buffer again; keepLean drops it after each
// read while no call has started or ended. Any call ends lean mode until
// the next quiet interval, so a busy connection never reallocates its
// buffers per read.
//
// Where: releaseIdle and keepLean touch what readInput owns, so they run
// on the goroutine that reads the connection (the loop); a reader moved
// elsewhere must run them there.
type idleState struct {
	lean    atomic.Bool // releaseIdle ran and no call started or ended since; set and cleared on the loop
	leanAct uint64      // Conn.activity when it went lean; guarded by Conn.mu
	seenAct uint64      // Conn.activity at the last tick; guarded by Conn.mu
	since   time.Time   // since when nothing is in flight and seenAct holds; guarded by Conn.mu
}

// tlsInput holds the offsets in tls.Conn of rawInput (bytes.Buffer), input
// (bytes.Reader, a view of rawInput's memory) and hand (bytes.Buffer), or
// ok false when crypto/tls is not laid out that way.
var tlsInput = func() (l struct {
	ok               bool
	raw, input, hand uintptr
}) {
	t := reflect.TypeFor[tls.Conn]()
	field := func(name string, want reflect.Type) (uintptr, bool) {
		f, ok := t.FieldByName(name)
		return f.Offset, ok && len(f.Index) == 1 && f.Type == want
	}
	buf, rd := reflect.TypeFor[bytes.Buffer](), reflect.TypeFor[bytes.Reader]()
	var ok1, ok2, ok3 bool
	l.raw, ok1 = field("rawInput", buf)
	l.input, ok2 = field("input", rd)
	l.hand, ok3 = field("hand", buf)
	l.ok = ok1 && ok2 && ok3
	return l
}()

// tlsBuffers returns tc's receive buffers, or nils when their layout is
// unknown. Only the goroutine that calls tc.Read may touch them, between
// calls: the loop, once the connection is enrolled.
func tlsBuffers(tc *tls.Conn) (raw *bytes.Buffer, input *bytes.Reader, hand *bytes.Buffer) {
	if !tlsInput.ok || tc == nil {
		return nil, nil, nil
	}
	p := unsafe.Pointer(tc)
	return (*bytes.Buffer)(unsafe.Add(p, tlsInput.raw)),
		(*bytes.Reader)(unsafe.Add(p, tlsInput.input)),
		(*bytes.Buffer)(unsafe.Add(p, tlsInput.hand))
}

// releaseTLSInput drops tc's receive buffers when they hold no bytes (no
// partial record, no plaintext or handshake data waiting); crypto/tls
// allocates them again, at the size needed, on the next record. It reports
// whether it released them. Loop only (see tlsBuffers).
func releaseTLSInput(tc *tls.Conn) bool {
	raw, input, hand := tlsBuffers(tc)
	if raw == nil || raw.Len() != 0 || input.Len() != 0 || hand.Len() != 0 {
		return false
	}
	*raw, *input, *hand = bytes.Buffer{}, bytes.Reader{}, bytes.Buffer{}
	return true
}

// idleReleaseDueLocked reports, on the timer goroutine with c.mu held,
// whether the connection is not lean and has been quiet for a whole tick
// interval d: nothing in flight and no call started or ended (keepalive
// frames may have come and gone), or nothing received at all (calls in
// flight that wait). The caller then queues releaseIdle on the loop, after
// unlocking.
func (c *Conn) idleReleaseDueLocked(now time.Time, d time.Duration) bool {
	if len(c.pending) > 0 || len(c.inflight) > 0 || c.activity != c.idle.seenAct {
		c.idle.seenAct, c.idle.since = c.activity, now
	}
	if c.idle.lean.Load() {
		return false
	}
	return now.Sub(c.idle.since) >= d || now.UnixNano()-c.lastRecv.Load() >= int64(d)
}

// releaseIdle runs on the loop when the connection went quiet: it drops
// what the connection's busiest moment left allocated, unless a frame or
// message is partial, and makes the connection lean.
func (c *Conn) releaseIdle() {
	if c.lingering {
		return
	}
	c.compactReadBuf()
	released := c.tc == nil || releaseTLSInput(c.tc)
	if !released || c.rbuf != nil || len(c.asm) > 0 {
		return // a record, frame or message is partial: it stays; tick tries again
	}
	c.asm = nil
	c.lastStream = nil

	q := &c.wq
	q.mu.Lock()
	q.urgent.shrink()
	q.normal.shrink()
	for i := range q.outbox {
		if len(q.outbox[i]) == 0 {
			q.outbox[i] = nil
		}
	}
	if !q.direct && !q.flushing {
		// No writer, and none can start while q.mu is held: what the
		// writer owns is ours for now.
		c.iov = nil
		c.batch.shrink()
		c.wout.shrink()
	}
	q.mu.Unlock()
	c.tr.outMu.Lock()
	c.tr.out.shrink()
	c.tr.outMu.Unlock()

	c.mu.Lock()
	if c.closeErr == nil {
		// A map keeps the table of its largest size; an empty one is
		// replaced by a new one of the smallest.
		if c.pending != nil && len(c.pending) == 0 {
			c.pending = make(map[uint32]*call)
		}
		if c.inflight != nil && len(c.inflight) == 0 {
			c.inflight = make(map[uint32]*serverCall)
		}
		if len(c.ordered) == 0 {
			c.ordered = nil
		}
		if c.poolHead == len(c.poolQueue) {
			c.poolQueue, c.poolHead = nil, 0
		}
		c.idle.leanAct = c.activity
		c.idle.lean.Store(true)
	}
	c.mu.Unlock()
}

// compactReadBuf moves the bytes of a partial frame that waits in the read
// buffer into the smallest size class that holds them, so that a quiet
// peer that sent a few bytes of a frame does not hold a 64 KiB buffer.
// ensureReadSpace grows it again when more bytes come. Loop only.
func (c *Conn) compactReadBuf() {
	if c.rbuf == nil {
		return
	}
	pending := c.rlen - c.roff
	size := pending
	if i := classOf(pending); i >= 0 {
		size = bufClasses[i]
	}
	if 2*size > cap(*c.rbuf) {
		return
	}
	nb := getBuf(size)
	*nb = (*nb)[:cap(*nb)]
	copy(*nb, (*c.rbuf)[c.roff:c.rlen])
	putReadBuf(c.rbuf)
	c.rbuf, c.roff, c.rlen = nb, 0, pending
}

// keepLean runs on the loop after each read: on a lean connection that
// only received keepalive frames (no call started or ended, none in
// flight) it drops the small TLS buffer the read allocated; otherwise the
// connection is in use and stops being lean.
func (c *Conn) keepLean() {
	if !c.idle.lean.Load() {
		return
	}
	c.mu.Lock()
	quiet := c.activity == c.idle.leanAct && len(c.pending) == 0 && len(c.inflight) == 0
	c.mu.Unlock()
	if !quiet || c.rbuf != nil {
		c.idle.lean.Store(false)
		return
	}
	if c.tc != nil {
		releaseTLSInput(c.tc)
	}
}
