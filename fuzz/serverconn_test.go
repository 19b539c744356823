package fuzz

import (
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/conn"
)

// FuzzServerConn: a fresh hostile dialer completes a valid handshake with
// conn.DialRaw, then sends the frames a program builds (buildHostile)
// followed by raw bytes; once the server has parsed them (a PONG), the
// harness credits stream items like a consumer until the handlers settle
// (settleTime), then sends close_notify. Whatever the input:
//   - nothing panics (a panic would crash the process);
//   - the server closes the connection, by itself (a protocol violation,
//     reported to OnError as a codec.ErrProtocol, and a GOAWAY, if one
//     arrives, carrying codec.CodeOf of it) or after the dialer's
//     close_notify; its handlers return;
//   - every frame the server sends parses within the dialer's announced
//     max frame size, is a kind an acceptor sends, answers an ID the dialer
//     used in a CALL, and no stream exceeds the dialer's window plus the
//     CREDIT it was sent;
//   - handling the input allocates at most allocBound bytes;
//   - the long-lived well-behaved client still gets correct echo replies.
func FuzzServerConn(f *testing.F) { f.Fuzz(serverConnCase) }

func serverConnCase(t *testing.T, prog, raw []byte) {
	w := getWorld(t)
	runHostile(t, w.acc, append(buildHostile(prog), raw...))
	w.checkGood(t)
}

// sentScan is what the server can have parsed of the bytes sent: frames up
// to the first header-level violation (the server stops there too).
type sentScan struct {
	end       scanEnd
	calls     int // CALL frames
	comp      int // frames with FlagCompressed
	callIDs   map[uint32]bool
	reused    map[uint32]bool // IDs with more than one CALL (PROTOCOL.md §3.3: their replies may interleave)
	opens     map[uint32]int  // CALL frames with FlagStream, by ID
	credits   map[uint32]int  // CREDIT increments sent, by ID
	violation error
	// errGoAway: a GOAWAY with an error code was sent; the server then
	// closes the connection (PROTOCOL.md §7) without a violation.
	errGoAway bool
}

type scanEnd uint8

const (
	endClean     scanEnd = iota // the bytes end at a frame boundary
	endTruncated                // the last frame is incomplete
	endViolation                // a header the server refuses
)

func scanSent(b []byte) *sentScan {
	s := &sentScan{callIDs: map[uint32]bool{}, reused: map[uint32]bool{}, opens: map[uint32]int{}, credits: map[uint32]int{}}
	for len(b) > 0 {
		f, n, err := codec.Parse(b, maxFrame)
		if errors.Is(err, codec.ErrNeedMore) {
			s.end = endTruncated
			return s
		}
		if err != nil {
			s.end, s.violation = endViolation, err
			return s
		}
		b = b[n:]
		if f.Flags&codec.FlagCompressed != 0 {
			s.comp++
		}
		switch f.Kind {
		case codec.KindCall:
			s.calls++
			if s.callIDs[f.ID] {
				s.reused[f.ID] = true
			}
			s.callIDs[f.ID] = true
			if f.Flags&codec.FlagStream != 0 {
				s.opens[f.ID]++
			}
		case codec.KindCredit:
			s.credits[f.ID] += int(f.Arg)
		case codec.KindGoAway:
			s.errGoAway = s.errGoAway || f.Code != codec.CodeOK
		}
	}
	return s
}

// allocBound is the most a server may allocate while handling sent bytes
// (PROTOCOL.md §2: no allocation sized by the peer beyond the limits).
//
//   - fixed: a few times (max frame + max message) for read buffers, one
//     message in reassembly and its reply, plus 512 KiB for TLS records, the
//     frame reader of this harness and pool refills after a GC;
//   - 8 bytes per byte sent: the read buffer, reassembly (a partial message
//     is copied with room to double), the request copy for a pool handler,
//     the reply and the TLS record around it;
//   - 6 × max frame per compressed frame: s2 may expand a few bytes to the
//     max frame size (never more, §3.8), and that payload is then copied
//     through reassembly, the handler and the reply like any other;
//   - 16 KiB per CALL: the call's context and state, and for fuzz.Watch up to
//     7 items of 2040 bytes.
//
// A length field alone (a header claiming 1 GiB, an s2 header claiming
// 8 MiB) buys nothing: it must be backed by bytes sent or be refused.
func allocBound(s *sentScan, sent int) uint64 {
	return 4*(maxFrame+maxMessage) + 512<<10 +
		8*uint64(sent) +
		6*maxFrame*uint64(s.comp) +
		16<<10*uint64(s.calls)
}

// observed checks the server's frames as they arrive (on the reader's
// goroutine) and owes CREDIT for the stream items it received, as a
// well-behaved consumer would.
type observed struct {
	scan     *sentScan
	goAway   codec.Code
	gotGoAwy bool
	kinds    map[codec.Kind]bool
	errCodes map[codec.Code]bool // codes of ERROR frames
	bad      string              // first invariant broken

	cont map[uint32]codec.Kind // REPLY or STREAM_ITEM in progress (MORE), by ID

	mu      sync.Mutex
	cost    map[uint32]int // stream flow-control cost received, by ID
	owed    map[uint32]int // cost received and not yet credited, by ID
	granted map[uint32]int // CREDIT sent by settle, by ID
}

func newObserved(scan *sentScan) *observed {
	return &observed{
		scan: scan, kinds: map[codec.Kind]bool{}, errCodes: map[codec.Code]bool{}, cont: map[uint32]codec.Kind{},
		cost: map[uint32]int{}, owed: map[uint32]int{}, granted: map[uint32]int{},
	}
}

func (o *observed) onFrame(f codec.Frame) bool {
	fail := func(msg string) bool {
		if o.bad == "" {
			o.bad = msg + ": " + f.Kind.String()
		}
		return false
	}
	o.kinds[f.Kind] = true
	if o.scan.reused[f.ID] && f.Kind != codec.KindStreamItem {
		// The program called this ID more than once: the answers to the
		// two calls may interleave (PROTOCOL.md §3.3), so the per-ID message
		// sequence is not checked. Stream items stay window-checked below.
		if !o.scan.callIDs[f.ID] {
			return fail("response for an ID never called")
		}
		delete(o.cont, f.ID)
		return false
	}
	msg := f.Kind // the kind of message this frame belongs to
	switch f.Kind {
	case codec.KindPong:
	case codec.KindGoAway:
		o.gotGoAwy, o.goAway = true, f.Code
	case codec.KindReply, codec.KindError, codec.KindStreamEnd:
		if f.Kind == codec.KindError {
			o.errCodes[f.Code] = true
		}
		if !o.scan.callIDs[f.ID] {
			return fail("response for an ID never called")
		}
		if _, busy := o.cont[f.ID]; busy && f.Kind != codec.KindError {
			// An ERROR may end a stream whose handler failed within an item.
			return fail("a new message while a fragmented one is unfinished")
		}
		delete(o.cont, f.ID)
	case codec.KindStreamItem:
		if o.scan.opens[f.ID] == 0 {
			return fail("stream item for an ID never opened as a stream")
		}
		if _, busy := o.cont[f.ID]; busy {
			return fail("a new message while a fragmented one is unfinished")
		}
	case codec.KindContinuation:
		var busy bool
		if msg, busy = o.cont[f.ID]; !busy {
			return fail("CONTINUATION without a first fragment")
		}
	default:
		return fail("a kind an acceptor never sends")
	}
	if msg == codec.KindReply || msg == codec.KindStreamItem {
		if f.Flags&codec.FlagMore != 0 {
			o.cont[f.ID] = msg
		} else {
			delete(o.cont, f.ID)
		}
	}
	if msg == codec.KindStreamItem {
		o.mu.Lock()
		defer o.mu.Unlock()
		c := len(f.Body) + codec.HeaderSize
		o.cost[f.ID] += c
		o.owed[f.ID] += c
		if o.cost[f.ID] > o.scan.opens[f.ID]*hostileWindow+o.scan.credits[f.ID]+o.granted[f.ID] {
			return fail("stream window exceeded")
		}
	}
	return false
}

// takeCredit returns the CREDIT frames a consumer would send now: for each
// stream, the cost received and not yet returned, once it is a quarter
// window (PROTOCOL.md §3.7).
func (o *observed) takeCredit() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []byte
	for id, n := range o.owed {
		if n >= hostileWindow/4 {
			out = codec.Append(out, codec.Frame{Header: codec.Header{Kind: codec.KindCredit, ID: id, Arg: uint32(n)}})
			o.granted[id] += n
			delete(o.owed, id)
		}
	}
	return out
}

// settleTime bounds how long a harness waits, after the server has parsed
// an input, for its handlers to finish: a handler that waits for a CANCEL
// or a stream the input never credits is cut short by the close.
const settleTime = 10 * time.Millisecond

// settle lets the handlers of the input finish (crediting streams as items
// arrive) until the server has nothing in flight or settleTime passes.
func settle(p *peer, sc *conn.Conn, obs *observed) {
	deadline := time.Now().Add(settleTime)
	for sc.InFlight() > 0 && time.Now().Before(deadline) {
		if credit := obs.takeCredit(); len(credit) > 0 {
			p.write(credit)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// runHostile sends one input on a fresh authenticated connection to a,
// checks what follows and returns what the server sent.
func runHostile(t *testing.T, a *acceptor, sent []byte) *observed {
	p := dialPeer(t, a.addr(), hostileConfig())
	defer p.nc.Close()
	sc := a.serverSide(t, p.local)
	scan := scanSent(sent)
	obs := newObserved(scan)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rd := readFrames(p, obs.onFrame)
	p.write(sent)
	// Unless the input ends inside a frame (a PING would be read as its
	// body), a PONG proves the server handled the whole input; after the
	// handlers settle, a second one is flushed after their replies.
	if scan.end != endTruncated && rd.pong(t, p, 0) {
		settle(p, sc, obs)
		rd.pong(t, p, 1)
	}
	closedFirst := false
	select {
	case <-rd.done:
		closedFirst = true
	default:
	}
	p.closeWrite()
	rd.wait(t)
	errs := a.release(t, sc)
	runtime.ReadMemStats(&after)

	if rd.parseErr != nil {
		t.Fatalf("the server sent bytes that are not a frame within the dialer's limits: %v", rd.parseErr)
	}
	if rd.timedOut {
		t.Fatal("the server did not close the connection after close_notify")
	}
	if obs.bad != "" {
		t.Fatalf("server broke an invariant: %s", obs.bad)
	}
	var protoErr error
	for _, err := range errs {
		switch {
		case errors.Is(err, codec.ErrProtocol):
			if protoErr == nil {
				protoErr = err
			}
		case errors.Is(err, conn.ErrTruncated):
		default:
			t.Fatalf("OnError reported %v (%T), want a codec.ErrProtocol or conn.ErrTruncated", err, err)
		}
	}
	if closedFirst && protoErr == nil && !scan.errGoAway {
		t.Fatalf("the server closed the connection by itself (%v) without reporting a protocol violation: %v", rd.err, errs)
	}
	if obs.gotGoAwy && obs.goAway != codec.CodeOK {
		if protoErr == nil {
			t.Fatalf("GOAWAY %v without a reported violation", obs.goAway)
		}
		if want := codec.CodeOf(protoErr); obs.goAway != want {
			t.Fatalf("GOAWAY %v for %v, want %v", obs.goAway, protoErr, want)
		}
	}
	if grew, bound := after.TotalAlloc-before.TotalAlloc, allocBound(scan, len(sent)); grew > bound {
		t.Fatalf("handling %d bytes (%d calls, %d compressed frames) allocated %d bytes, bound %d",
			len(sent), scan.calls, scan.comp, grew, bound)
	}
	return obs
}
