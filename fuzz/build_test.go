package fuzz

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/hawser-rpc/hawser/codec"
)

// A program is fuzz bytes read as a sequence of operations, each an opcode
// byte followed by its operands. The operations build frames with the codec
// package, so most inputs are well-formed enough to pass the header checks
// and reach the connection's deeper states (reassembly, admission, streams,
// flow control, decompression); a few operations then corrupt what was
// built. Reading past the end of the program yields zero bytes.

// progReader reads operands from a program.
type progReader struct {
	prog []byte
	pos  int
}

func (r *progReader) more() bool { return r.pos < len(r.prog) }

func (r *progReader) byte() byte {
	if r.pos >= len(r.prog) {
		r.pos++
		return 0
	}
	b := r.prog[r.pos]
	r.pos++
	return b
}

func (r *progReader) u16() uint16 { return uint16(r.byte())<<8 | uint16(r.byte()) }
func (r *progReader) u32() uint32 { return uint32(r.u16())<<16 | uint32(r.u16()) }

// bytes returns the next n program bytes (fewer at the end).
func (r *progReader) bytes(n int) []byte {
	start := min(r.pos, len(r.prog))
	end := min(start+n, len(r.prog))
	r.pos += n
	return r.prog[start:end]
}

// payloadOf makes a deterministic payload: compressible for an even seed,
// incompressible (xorshift) for an odd one. The first two bytes shape a
// fuzz.Watch stream (watchShape).
func payloadOf(size int, seed byte) []byte {
	p := make([]byte, size)
	if seed&1 == 0 {
		for i := range p {
			p[i] = seed + byte(i%4)
		}
		return p
	}
	x := uint32(seed) | 0x9e3779b1
	for i := range p {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		p[i] = byte(x)
	}
	if size > 0 {
		p[0] = seed
	}
	if size > 1 {
		p[1] = seed + 1
	}
	return p
}

// metadataOf makes a valid metadata block of sel%4 entries.
func metadataOf(sel byte) codec.Metadata {
	var md codec.Metadata
	for i := range int(sel % 4) {
		v := make([]byte, int(sel>>2)*(i+1))
		var err error
		if md, err = codec.AppendMetadata(md, fmt.Sprintf("k%d", i), v); err != nil {
			panic(err) // at most 3 entries of 189 bytes: always fits
		}
	}
	return md
}

// compressBlock is the s2 block of p, whether or not it is smaller.
func compressBlock(p []byte) []byte {
	out, _ := codec.Compress(make([]byte, 0, codec.MaxCompressedLen(len(p))), p)
	return out
}

// fragments encodes one message as its first frame (header h, which
// carries the kind-specific flags, then prefix and the first part of
// payload) and CONTINUATION frames carrying at most frag payload bytes each
// (frag <= 0: one frame). With compress, every frame's payload part is an s2
// block and the frame has FlagCompressed.
func fragments(h codec.Header, prefix, payload []byte, frag int, compress bool) [][]byte {
	if frag <= 0 {
		frag = max(len(payload), 1)
	}
	var out [][]byte
	first := true
	for first || len(payload) > 0 {
		n := min(len(payload), frag)
		part := payload[:n]
		payload = payload[n:]
		fh := h
		if !first {
			fh = codec.Header{Kind: codec.KindContinuation, ID: h.ID}
		}
		if len(payload) > 0 {
			fh.Flags |= codec.FlagMore
		}
		if compress {
			fh.Flags |= codec.FlagCompressed
			part = compressBlock(part)
		}
		var body []byte
		if first {
			body = append(append(make([]byte, 0, len(prefix)+len(part)), prefix...), part...)
		} else {
			body = part
		}
		out = append(out, codec.Append(nil, codec.Frame{Header: fh, Body: body}))
		first = false
	}
	return out
}

// callPrefix is a CALL body's prefix: the method ID and, with FlagMetadata,
// the metadata block (possibly empty, which codec.AppendCallPrefix does not
// write).
func callPrefix(method uint64, withMD bool, md codec.Metadata) []byte {
	p := binary.BigEndian.AppendUint64(nil, method)
	if withMD {
		p = binary.BigEndian.AppendUint16(p, uint16(len(md)))
		p = append(p, md...)
	}
	return p
}

// frameOf encodes a frame.
func frameOf(h codec.Header, body []byte) []byte {
	return codec.Append(nil, codec.Frame{Header: h, Body: body})
}

// Hostile programs (FuzzServerConn). The low nibble of an opcode byte picks
// the operation, the high nibble modifies it.
const (
	opCall      = iota // a CALL, possibly fragmented, compressed, with metadata
	opContinue         // the next fragment of a deferred message, or an orphan CONTINUATION
	opCancel           // CANCEL of a used ID
	opCredit           // CREDIT, valid or not
	opPing             // PING
	opPong             // PONG
	opGoAway           // GOAWAY with any code, optional (malformed) body
	opWrongDir         // a frame only an acceptor may send, or HELLO/HELLO_ACK
	opRawHeader        // an arbitrary header with a body from the program
	opMutate           // XOR one byte of what was built
	opTruncate         // cut what was built
	opBurst            // many small calls: above MaxCalls, MaxStreams, pool size
	opStream           // a stream call (fuzz.Watch, or fuzz.WatchHold) followed by CREDITs
	opRepeat           // the last frame again (a duplicate ID)
	opBomb             // a compressed payload whose s2 header claims too much
	opHello            // a valid HELLO after the handshake
)

// maxBuilt bounds what one program builds, so an iteration stays fast.
const maxBuilt = 512 << 10

var (
	callMethods = []uint64{mEcho, mInline, mOrdered, mWatch, mBlock, mPanic, mUnknown}
	// fragSizes: 0 is one frame, which may exceed the max frame size.
	fragSizes = [8]int{0, 1, 7, 100, 1000, 4096, 8182, 16000}
	deadlines = [4]uint32{0, 0, 1, 5_000_000}
)

type hostileBuilder struct {
	progReader
	out  []byte
	last int    // offset of the last frame in out
	next uint32 // next fresh (odd) call ID
	ids  []uint32
	pend [][][]byte // deferred fragments of messages, in order
}

// buildHostile runs a hostile program and returns the bytes it built.
func buildHostile(prog []byte) []byte {
	b := &hostileBuilder{progReader: progReader{prog: prog}, next: 1}
	for b.more() && len(b.out) < maxBuilt {
		op := b.byte()
		b.op(op&0x0f, op>>4)
	}
	// Deferred fragments follow, interleaved.
	for len(b.pend) > 0 {
		for i := 0; i < len(b.pend); i++ {
			b.emitPending(i)
		}
	}
	return b.out
}

func (b *hostileBuilder) add(frame []byte) {
	b.last = len(b.out)
	b.out = append(b.out, frame...)
}

func (b *hostileBuilder) emitPending(i int) {
	b.add(b.pend[i][0])
	b.pend[i] = b.pend[i][1:]
	if len(b.pend[i]) == 0 {
		b.pend = append(b.pend[:i], b.pend[i+1:]...)
	}
}

func (b *hostileBuilder) fresh() uint32 {
	id := b.next
	b.next += 2
	b.ids = append(b.ids, id)
	return id
}

// id picks a call ID: mostly fresh, sometimes reused, even, arbitrary or 0.
func (b *hostileBuilder) id() uint32 {
	sel := b.byte()
	switch {
	case sel < 0xc0:
		return b.fresh()
	case sel < 0xf0:
		if len(b.ids) == 0 {
			return b.fresh()
		}
		return b.ids[len(b.ids)-1-int(sel)%len(b.ids)]
	case sel < 0xf8:
		return b.next + 1
	case sel < 0xff:
		return b.u32()
	}
	return 0
}

// usedID picks an ID already used, if any.
func (b *hostileBuilder) usedID() uint32 {
	if len(b.ids) > 0 {
		sel := b.byte()
		if sel < 0xf0 {
			return b.ids[len(b.ids)-1-int(sel)%len(b.ids)]
		}
	}
	return b.id()
}

func (b *hostileBuilder) op(op, mod byte) {
	switch op {
	case opCall:
		m := callMethods[int(b.byte())%len(callMethods)]
		fl := b.byte()
		id := b.id()
		size := int(b.u16())
		if fl&0x10 != 0 {
			size *= 2 // up to 128 KiB: beyond the max message size
		}
		payload := payloadOf(size, b.byte())
		h := codec.Header{Kind: codec.KindCall, ID: id, Arg: deadlines[b.byte()%4]}
		if fl&1 != 0 {
			h.Flags |= codec.FlagUrgent
		}
		if (m == mWatch) != (fl&8 != 0) {
			h.Flags |= codec.FlagStream
		}
		var md codec.Metadata
		if fl&2 != 0 {
			h.Flags |= codec.FlagMetadata
			md = metadataOf(b.byte())
		}
		frames := fragments(h, callPrefix(m, fl&2 != 0, md), payload, fragSizes[fl>>5], fl&4 != 0)
		b.add(frames[0])
		if len(frames) > 1 {
			if mod&1 != 0 {
				b.pend = append(b.pend, frames[1:])
			} else {
				for _, f := range frames[1:] {
					b.add(f)
				}
			}
		}
	case opContinue:
		if len(b.pend) > 0 {
			b.emitPending(int(b.byte()) % len(b.pend))
			return
		}
		h := codec.Header{Kind: codec.KindContinuation, ID: b.usedID()}
		body := payloadOf(int(b.byte()), mod)
		if mod&1 != 0 {
			h.Flags |= codec.FlagMore
		}
		if mod&2 != 0 {
			h.Flags |= codec.FlagCompressed
			body = compressBlock(body)
		}
		b.add(frameOf(h, body))
	case opCancel:
		b.add(frameOf(codec.Header{Kind: codec.KindCancel, ID: b.usedID()}, nil))
	case opCredit:
		id := b.usedID()
		var arg uint32
		switch b.byte() % 8 {
		case 0:
			arg = hostileWindow / 4
		case 1:
			arg = hostileWindow
		case 2:
			arg = 1
		case 3:
			arg = 0 // a header violation
		case 4:
			arg = 0xffffffff
		case 5:
			arg = 2 * hostileWindow
		default:
			arg = uint32(b.u16())
		}
		b.add(frameOf(codec.Header{Kind: codec.KindCredit, ID: id, Arg: arg}, nil))
	case opPing:
		b.add(pingFrame(uint32(b.u16())))
	case opPong:
		b.add(frameOf(codec.Header{Kind: codec.KindPong, Arg: uint32(b.u16())}, nil))
	case opGoAway:
		h := codec.Header{Kind: codec.KindGoAway, Code: codec.Code(b.byte() % 24), Arg: uint32(b.u16())}
		var body []byte
		switch {
		case mod&1 != 0:
			body = codec.AppendErrorBody(nil, "", "fuzz goaway")
		case mod&2 != 0:
			body = []byte{200, 'x'} // name length past the body
		}
		b.add(frameOf(h, body))
	case opWrongDir:
		kinds := [...]codec.Kind{codec.KindReply, codec.KindError, codec.KindStreamItem, codec.KindStreamEnd, codec.KindHello, codec.KindHelloAck}
		k := kinds[int(b.byte())%len(kinds)]
		h := codec.Header{Kind: k, ID: b.usedID()}
		var body []byte
		switch k {
		case codec.KindError:
			h.Code = codec.Code(b.byte()%23 + 1)
			body = codec.AppendErrorBody(nil, "x", "wrong way")
		case codec.KindReply, codec.KindStreamItem:
			body = payloadOf(int(b.byte()), 2)
			if mod&1 != 0 {
				h.Flags |= codec.FlagMore
			}
		case codec.KindHello, codec.KindHelloAck:
			h.ID = 0
		}
		b.add(frameOf(h, body))
	case opRawHeader:
		h := codec.Header{Kind: codec.Kind(b.byte()), Flags: codec.Flags(b.byte()), Code: codec.Code(b.u16()), ID: b.u32(), Arg: b.u32()}
		body := b.bytes(int(b.byte()))
		f := frameOf(h, body)
		if mod&1 != 0 { // the header lies about the length
			binary.BigEndian.PutUint32(f, b.u32())
		}
		b.add(f)
	case opMutate:
		off, x := int(b.u16()), b.byte()
		if len(b.out) == 0 {
			return
		}
		if mod&1 != 0 && b.last < len(b.out) {
			b.out[b.last+off%(len(b.out)-b.last)] ^= x
		} else {
			b.out[off%len(b.out)] ^= x
		}
	case opTruncate:
		if len(b.out) > 0 {
			b.out = b.out[:int(b.u16())%len(b.out)]
			b.last = min(b.last, len(b.out))
		}
	case opBurst:
		n := int(b.byte() % 40)
		m := callMethods[int(b.byte())%len(callMethods)]
		for range n {
			h := codec.Header{Kind: codec.KindCall, ID: b.fresh()}
			if m == mWatch {
				h.Flags |= codec.FlagStream
			}
			b.add(frameOf(h, append(callPrefix(m, false, nil), mod)))
		}
	case opStream:
		// mod&1: CREDITs of W instead of W/4; mod&2: URGENT; mod&8: the
		// handler holds the stream open after its items (fuzz.WatchHold),
		// so the CREDITs reach it in flight.
		id := b.fresh()
		h := codec.Header{Kind: codec.KindCall, Flags: codec.FlagStream, ID: id}
		if mod&2 != 0 {
			h.Flags |= codec.FlagUrgent
		}
		m := mWatch
		if mod&8 != 0 {
			m = mHold
		}
		b.add(frameOf(h, append(callPrefix(m, false, nil), b.byte(), b.byte())))
		credit := uint32(hostileWindow / 4)
		if mod&1 != 0 {
			credit = hostileWindow
		}
		for range int(b.byte() % 4) {
			b.add(frameOf(codec.Header{Kind: codec.KindCredit, ID: id, Arg: credit}, nil))
		}
	case opRepeat:
		if b.last < len(b.out) {
			b.add(append([]byte(nil), b.out[b.last:]...))
		}
	case opBomb:
		claims := [...]uint64{maxFrame + 1, 8 << 20, 1 << 31, 100}
		block := binary.AppendUvarint(nil, claims[b.byte()%4])
		block = append(block, b.bytes(int(b.byte()%16))...)
		if mod&2 != 0 {
			block = realBomb()
		}
		if mod&1 != 0 && len(b.pend) > 0 {
			var id uint32
			if h, err := codec.ParseHeader(b.pend[int(b.byte())%len(b.pend)][0], codec.HardMaxFrameSize); err == nil {
				id = h.ID
			}
			b.add(frameOf(codec.Header{Kind: codec.KindContinuation, Flags: codec.FlagCompressed, ID: id}, block))
			return
		}
		h := codec.Header{Kind: codec.KindCall, Flags: codec.FlagCompressed, ID: b.id()}
		b.add(frameOf(h, append(callPrefix(mEcho, false, nil), block...)))
	case opHello:
		body, err := codec.AppendHello(nil, &codec.Hello{NodeID: "again", MaxFrame: maxFrame})
		if err != nil {
			panic(err)
		}
		b.add(frameOf(codec.Header{Kind: codec.KindHello}, body))
	}
}

// realBomb is a genuine s2 block of 8 MiB of zeros: small on the wire
// (a few hundred bytes), far above the max frame size once decoded.
var realBomb = sync.OnceValue(func() []byte { return compressBlock(make([]byte, 8<<20)) })
