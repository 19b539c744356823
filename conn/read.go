package conn

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
)

// minReadSpace is the free space wanted before a read: one full TLS record.
const minReadSpace = 16 << 10

// onTraffic runs on the loop when bytes arrived (or when onOpen kicks it):
// it decrypts what is available into the read buffer, parses and handles
// every complete frame, then flushes what the handlers queued. While input
// is paused (§9) the bytes stay in gnet's inbound buffer, up to
// MaxInputBacklog; while a graceful close lingers they are dropped.
func (c *Conn) onTraffic() gnet.Action {
	if c.dead {
		return gnet.Close
	}
	c.lastRecv.Store(time.Now().UnixNano())
	switch {
	case c.lingering:
		_, _ = c.gc.Discard(-1)
		return gnet.None
	case c.paused:
		if n := c.gc.InboundBuffered(); n > c.cfg.MaxInputBacklog {
			return c.failLoop(fmt.Errorf("%w: %d bytes of input not processed while its output waits", ErrSlowReader, n), codec.CodeSlowReader)
		}
		return gnet.None
	}
	return c.service()
}

// service handles buffered and new input until none is left or input
// pauses, then flushes; when that flush lifts a pause it goes round again.
func (c *Conn) service() gnet.Action {
	for {
		if act, stop := c.readInput(); stop {
			return act
		}
		c.flush()
		if c.dead {
			return gnet.Close
		}
		if !c.resumed {
			return gnet.None
		}
		c.resumed = false
	}
}

// readInput parses what the read buffer holds and decrypts more, until
// gnet has no more bytes or input pauses. stop is true when the connection
// must close (act is gnet.Close).
func (c *Conn) readInput() (act gnet.Action, stop bool) {
	var err error
	for !c.lingering {
		if c.rlen > c.roff {
			if act, stop := c.parse(); stop {
				return act, true
			}
			if c.paused {
				return gnet.None, false
			}
		}
		if err != nil {
			if errors.Is(err, errWouldBlock) {
				break
			}
			return c.failLoop(c.readError(err), codec.CodeOK), true
		}
		c.ensureReadSpace()
		var n int
		n, err = c.readSome((*c.rbuf)[c.rlen:])
		c.rlen += n
	}
	if c.rlen == c.roff && c.rbuf != nil {
		putReadBuf(c.rbuf)
		c.rbuf, c.roff, c.rlen = nil, 0, 0
	}
	c.keepLean()
	return gnet.None, false
}

// readError names why reading stopped: the peer closed (ErrTruncated if a
// frame was cut short) or the socket or TLS failed.
func (c *Conn) readError(err error) error {
	if c.rbuf != nil && c.rlen > c.roff {
		return ErrTruncated
	}
	if errors.Is(err, io.EOF) {
		return ErrPeerClosed
	}
	return fmt.Errorf("%w: %w", ErrPeerClosed, err)
}

// readSome reads decrypted bytes into p; errWouldBlock means no more now.
func (c *Conn) readSome(p []byte) (int, error) {
	if c.tc != nil {
		return c.tc.Read(p)
	}
	n, _ := c.gc.Read(p)
	if n == 0 {
		return 0, errWouldBlock
	}
	return n, nil
}

// ensureReadSpace makes room for at least one TLS record, or for the rest of
// the frame being received when that is larger.
func (c *Conn) ensureReadSpace() {
	if c.rbuf == nil {
		c.rbuf, c.roff, c.rlen = getReadBuf(chunkSize), 0, 0
		return
	}
	buf := *c.rbuf
	if len(buf)-c.rlen >= minReadSpace {
		return
	}
	pending := c.rlen - c.roff
	need := pending + minReadSpace
	if h, err := codec.ParseHeader(buf[c.roff:c.rlen], c.cfg.MaxFrameSize); err == nil {
		need = max(need, codec.HeaderSize+int(h.Length))
	}
	if need <= len(buf) {
		copy(buf, buf[c.roff:c.rlen])
	} else {
		nb := getReadBuf(need)
		copy(*nb, buf[c.roff:c.rlen])
		putReadBuf(c.rbuf)
		c.rbuf = nb
	}
	c.roff, c.rlen = 0, pending
}

// parse handles every complete frame in the read buffer. stop is true when
// the connection must close (act is gnet.Close).
func (c *Conn) parse() (act gnet.Action, stop bool) {
	buf := *c.rbuf
	for c.roff < c.rlen {
		f, n, err := codec.Parse(buf[c.roff:c.rlen], c.cfg.MaxFrameSize)
		if errors.Is(err, codec.ErrNeedMore) {
			break
		}
		if err != nil {
			return c.failLoop(err, codec.CodeOf(err)), true
		}
		c.roff += n
		c.loopOver = false
		if err := c.handleFrame(f); err != nil {
			return c.failLoop(err, codec.CodeOf(err)), true
		}
		if c.dead {
			return gnet.Close, true
		}
		if c.loopOver {
			// The peer's input makes this loop queue output (PONG, ERROR,
			// an inline reply) that the peer does not read: stop reading it
			// until the output has drained (§9).
			c.paused = true
			break
		}
	}
	if c.roff == c.rlen {
		c.roff, c.rlen = 0, 0
	}
	return gnet.None, false
}

// message is a CALL, REPLY or STREAM_ITEM, whole or reassembled. Metadata
// and Payload alias the read buffer unless owned is true, in which case
// Payload is a fresh allocation the receiver may keep.
type message struct {
	h        codec.Header
	method   uint64
	metadata codec.Metadata
	payload  []byte
	owned    bool
}

// assembly is a message whose first frame had FlagMore. Its payload so far
// is in parts, pooled buffers filled in order; the last fragment joins them
// into one buffer of the message's exact size. So a payload is copied
// twice whatever its length, and what a handler keeps (Request.Keep) is
// its size, where growing one buffer by doubling copied up to three times
// its length into fresh memory and kept up to twice it.
type assembly struct {
	msg   message // payload unused until the last fragment
	parts []*[]byte
	n     int // payload bytes in parts
	held  int // bytes of buffer counted in Conn.asmBytes (metadata and parts' capacities)
}

// assemblyPart is the size of the pooled buffers a message is reassembled
// in (a class of getBuf, and the default fragment payload).
const assemblyPart = 64 << 10

// add appends p to the assembly's parts, taking pooled buffers as needed
// (counted against the connection's reassembly bound).
func (c *Conn) add(a *assembly, p []byte) error {
	for len(p) > 0 {
		if k := len(a.parts); k > 0 {
			last := a.parts[k-1]
			if room := cap(*last) - len(*last); room > 0 {
				n := min(room, len(p))
				*last = append(*last, p[:n]...)
				a.n += n
				p = p[n:]
				continue
			}
		}
		size := assemblyPart
		if len(a.parts) == 0 {
			size = min(size, len(p)) // a short message holds what it needs
		}
		b := getBuf(size)
		if err := c.growAssembly(cap(*b)); err != nil {
			putBuf(b)
			return err
		}
		a.held += cap(*b)
		a.parts = append(a.parts, b)
	}
	return nil
}

// join returns the assembled payload in one buffer of its exact size and
// gives the parts back.
func (a *assembly) join() []byte {
	b := make([]byte, 0, a.n)
	for _, p := range a.parts {
		b = append(b, *p...)
		putBuf(p)
	}
	a.parts = nil
	return b
}

// release gives the parts back (the message was abandoned).
func (a *assembly) release() {
	for _, p := range a.parts {
		putBuf(p)
	}
	a.parts = nil
}

// handleFrame dispatches one frame. A returned error is a protocol
// violation: the connection closes with a GOAWAY carrying its code.
func (c *Conn) handleFrame(f codec.Frame) error {
	switch f.Kind {
	case codec.KindPing:
		c.queueControl(codec.Header{Kind: codec.KindPong, Arg: f.Arg}, true)
		return nil
	case codec.KindPong:
		c.pingSent.Store(0)
		return nil
	case codec.KindGoAway:
		return c.onGoAway(f)
	case codec.KindHello, codec.KindHelloAck:
		return fmt.Errorf("%w: %v after the handshake", codec.ErrBadFrame, f.Kind)
	case codec.KindCall, codec.KindReply, codec.KindStreamItem:
		return c.onFirstFragment(f)
	case codec.KindContinuation:
		return c.onContinuation(f)
	}
	if c.dialer {
		switch f.Kind {
		case codec.KindError, codec.KindStreamEnd:
			return c.onResponse(message{h: f.Header, payload: f.Body})
		case codec.KindCancel, codec.KindCredit:
			return nil // for streams this side does not send; nothing to do
		}
	} else {
		switch f.Kind {
		case codec.KindCancel:
			c.onCancel(f.ID)
			return nil
		case codec.KindCredit:
			return c.onCredit(f.ID, f.Arg)
		}
	}
	return fmt.Errorf("%w: %v not expected from the %s", codec.ErrBadFrame, f.Kind, c.peerRole())
}

func (c *Conn) peerRole() string {
	if c.dialer {
		return "acceptor"
	}
	return "dialer"
}

// onFirstFragment handles the first (often only) frame of a message.
func (c *Conn) onFirstFragment(f codec.Frame) error {
	m := message{h: f.Header, payload: f.Body}
	if f.Kind == codec.KindCall {
		if c.dialer {
			// This version does not serve calls from the acceptor.
			c.replyError(f.ID, codec.CodeUnimplemented, "", "the dialer serves no calls", false)
			return nil
		}
		call, err := codec.ParseCall(f.Header, f.Body)
		if err != nil {
			return err
		}
		m.method, m.metadata, m.payload = call.Method, call.Metadata, call.Payload
	} else if !c.dialer {
		return fmt.Errorf("%w: %v not expected from the dialer", codec.ErrBadFrame, f.Kind)
	} else if f.Kind == codec.KindStreamItem {
		return c.onStreamFrame(f, true)
	}
	if f.Flags&codec.FlagCompressed != 0 {
		p, err := c.decompress(m.payload)
		if err != nil {
			return err
		}
		m.payload, m.owned = p, true
	}
	m.h.Flags &^= codec.FlagCompressed | codec.FlagMore
	if _, busy := c.asm[f.ID]; busy {
		return fmt.Errorf("%w: a second message started on ID %d before the first ended", codec.ErrBadFrame, f.ID)
	}
	if len(m.payload) > int(c.cfg.MaxMessageSize) {
		return fmt.Errorf("%w: message on ID %d exceeds %d bytes", codec.ErrMessageTooLarge, f.ID, c.cfg.MaxMessageSize)
	}
	if f.Flags&codec.FlagMore == 0 {
		return c.dispatch(m)
	}
	// Start reassembly: copy what aliases the read buffer.
	if c.asm == nil {
		c.asm = make(map[uint32]*assembly)
	}
	if len(c.asm) >= int(c.cfg.MaxCalls)+int(c.cfg.MaxStreams) {
		return fmt.Errorf("%w: too many messages in reassembly", codec.ErrMessageTooLarge)
	}
	if err := c.growAssembly(len(m.metadata)); err != nil {
		return err
	}
	a := &assembly{msg: m, held: len(m.metadata)}
	if len(m.metadata) > 0 {
		a.msg.metadata = append(codec.Metadata(nil), m.metadata...)
	}
	a.msg.payload = nil
	if err := c.add(a, m.payload); err != nil {
		c.asmBytes -= a.held
		a.release()
		return err
	}
	a.msg.owned = true
	c.asm[f.ID] = a
	return nil
}

// maxReassembly bounds the bytes of buffer held by partial messages on a
// connection (capacities, not lengths).
func (c *Conn) maxReassembly() int { return 4 * int(c.cfg.MaxMessageSize) }

func (c *Conn) growAssembly(n int) error {
	if c.asmBytes+n > c.maxReassembly() {
		return fmt.Errorf("%w: reassembly exceeds %d bytes", codec.ErrMessageTooLarge, c.maxReassembly())
	}
	c.asmBytes += n
	return nil
}

// onContinuation appends a fragment to its message and dispatches the
// message after its last fragment.
func (c *Conn) onContinuation(f codec.Frame) error {
	a := c.asm[f.ID]
	if a == nil {
		if c.dialer {
			return c.onStreamFrame(f, false)
		}
		return fmt.Errorf("%w: CONTINUATION for ID %d without a first fragment", codec.ErrBadFrame, f.ID)
	}
	part := f.Body
	if f.Flags&codec.FlagCompressed != 0 {
		p, err := c.decompress(part)
		if err != nil {
			return err
		}
		part = p
	}
	if a.n+len(part) > int(c.cfg.MaxMessageSize) {
		return fmt.Errorf("%w: message on ID %d exceeds %d bytes", codec.ErrMessageTooLarge, f.ID, c.cfg.MaxMessageSize)
	}
	if err := c.add(a, part); err != nil {
		return err
	}
	if f.Flags&codec.FlagMore != 0 {
		return nil
	}
	delete(c.asm, f.ID)
	c.asmBytes -= a.held
	a.msg.payload = a.join()
	return c.dispatch(a.msg)
}

// dropAssembly forgets a partial message (its call was cancelled).
func (c *Conn) dropAssembly(id uint32) {
	if a := c.asm[id]; a != nil {
		c.asmBytes -= a.held
		delete(c.asm, id)
		a.release()
	}
}

// decompress decodes an s2 payload into a fresh buffer of at most the
// maximum frame size; a larger claim is refused before allocating. A
// compressed frame when s2 was not negotiated is a protocol error.
func (c *Conn) decompress(src []byte) ([]byte, error) {
	if !c.compress {
		return nil, fmt.Errorf("%w: compressed frame without negotiated s2", codec.ErrBadFlags)
	}
	n, err := codec.DecompressedLen(src, int(c.cfg.MaxFrameSize))
	if err != nil {
		return nil, err
	}
	return codec.Decompress(make([]byte, 0, n), src, int(c.cfg.MaxFrameSize))
}

func (c *Conn) dispatch(m message) error {
	if m.h.Kind == codec.KindCall {
		return c.onCall(m)
	}
	return c.onResponse(m)
}

// onGoAway: the peer takes no call above Arg (acceptor), or starts no call
// after the one numbered Arg (dialer), §7. A non-zero code says why it is
// closing: the connection closes now.
func (c *Conn) onGoAway(f codec.Frame) error {
	var failed []*call
	c.mu.Lock()
	c.goingAway = true
	c.peerGoAwayLocked()
	c.drainWatch.Store(true)
	if f.Code != codec.CodeOK && c.closeErr == nil {
		eb, _ := codec.ParseErrorBody(f.Body)
		c.closeErr = &PeerError{Code: f.Code, Name: string(eb.Name), Message: string(eb.Message)}
	}
	if c.dialer {
		c.lastID = f.Arg
		if c.slotWait != nil {
			close(c.slotWait)
			c.slotWait = nil
		}
		// Calls above Arg were not and will not be processed: safe to retry.
		for id, cl := range c.pending {
			if id > f.Arg {
				delete(c.pending, id)
				if cl.stream != nil {
					c.streams--
				}
				failed = append(failed, cl)
			}
		}
		c.npending.Store(int32(len(c.pending)))
		c.activity++
	} else if !c.sentGoAway {
		// Calls the dialer started before its GOAWAY may still be on their
		// way (its GOAWAY is urgent and overtakes bulk CALLs): take them.
		c.acceptMax = max(c.acceptMax, c.lastID, f.Arg)
	}
	if c.drained == nil {
		c.drained = make(chan struct{})
	}
	c.checkDrainedLocked()
	closeNow := f.Code != codec.CodeOK || (c.dialer && len(c.pending) == 0)
	if closeNow && c.closeErr == nil {
		c.closeErr = ErrGoAway
	}
	c.mu.Unlock()
	terr := &hawser.TransportError{Op: "call", Addr: c.remote, Err: ErrGoAway}
	for _, cl := range failed {
		cl.fail(terr)
	}
	if closeNow {
		c.closing.Store(true)
		// Close after this callback: gnet's Close task runs on this loop.
		_ = c.gc.Close()
	}
	return nil
}
