package fuzz

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/conn"
)

// FuzzSplitFeed: a valid sequence of frames built from the fuzz program
// (validBuilder: calls of every mode, fragmented and interleaved,
// compressed, with metadata, urgent, streams, PINGs, a GOAWAY) is written
// to the acceptor whole on one connection and cut at the fuzzed offsets
// into several writes (so several TLS records, each parsed on its own) on
// another. Both must give the replies the builder's model predicts, so the
// same replies: per ID, the same sequence of REPLY, STREAM_ITEM (after
// reassembly and decompression), STREAM_END and ERROR; and the same PONGs.
func FuzzSplitFeed(f *testing.F) { f.Fuzz(splitFeedCase) }

func splitFeedCase(t *testing.T, prog, cuts []byte) {
	w := getWorld(t)
	v := buildValid(prog)
	whole := feed(t, w.acc, v, [][]byte{v.out})
	split := feed(t, w.acc, v, cutAt(v.out, cuts))
	if err := v.check(whole); err != nil {
		t.Fatalf("written whole: %v", err)
	}
	at := offsets(len(v.out), cuts)
	if err := v.check(split); err != nil {
		t.Fatalf("written in pieces at %v: %v", at, err)
	}
	if err := sameReplies(whole, split); err != nil {
		t.Fatalf("written in pieces at %v: %v", at, err)
	}
}

// offsets reads up to 8 cut offsets (u16 each) in [0, n], sorted.
func offsets(n int, cuts []byte) []int {
	var out []int
	for i := 0; i+1 < len(cuts) && len(out) < 8; i += 2 {
		out = append(out, (int(cuts[i])<<8|int(cuts[i+1]))%(n+1))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func cutAt(b, cuts []byte) [][]byte {
	var pieces [][]byte
	prev := 0
	for _, o := range offsets(len(b), cuts) {
		pieces = append(pieces, b[prev:o])
		prev = o
	}
	return append(pieces, b[prev:])
}

// event is one thing the acceptor sent for an ID: a complete REPLY or
// STREAM_ITEM (payload reassembled and decompressed), a STREAM_END or an
// ERROR (code; body kept to compare runs, not checked by the model).
type event struct {
	kind codec.Kind
	code codec.Code
	data []byte
}

func (e event) String() string {
	return fmt.Sprintf("%v/%v/%d bytes", e.kind, e.code, len(e.data))
}

// replies is everything the acceptor sent for one input.
type replies struct {
	byID  map[uint32][]event
	pongs []uint32
}

// validBuilder builds valid, deterministic sends (no CANCEL, no CREDIT, no
// deadline, no blocking handler, within MaxCalls, MaxStreams and the
// reassembly bounds) and models the acceptor's answer to each.
type validBuilder struct {
	progReader
	out       []byte
	next      uint32
	calls     int
	streams   int
	pend      []*validMsg
	goingAway bool
	lastID    uint32 // the acceptor's highest admitted call ID
	want      map[uint32][]event
	pings     []uint32
}

// validMsg is a call whose last fragments are deferred.
type validMsg struct {
	id     uint32
	frames [][]byte
	done   func() // models the acceptor once the last fragment is out
}

var validMethods = []uint64{mEcho, mInline, mOrdered, mWatch, mPanic, mUnknown}

func buildValid(prog []byte) *validBuilder {
	v := &validBuilder{progReader: progReader{prog: prog}, next: 1, want: map[uint32][]event{}}
	for v.more() && len(v.out) < maxBuilt {
		v.op(v.byte())
	}
	for len(v.pend) > 0 {
		for i := 0; i < len(v.pend); i++ {
			v.emitPending(i)
		}
	}
	return v
}

func (v *validBuilder) emitPending(i int) {
	m := v.pend[i]
	v.out = append(v.out, m.frames[0]...)
	m.frames = m.frames[1:]
	if len(m.frames) == 0 {
		v.pend = append(v.pend[:i], v.pend[i+1:]...)
		m.done()
	}
}

func (v *validBuilder) op(op byte) {
	switch op % 4 {
	case 0:
		v.call()
	case 1:
		if len(v.pend) > 0 {
			v.emitPending(int(v.byte()) % len(v.pend))
		}
	case 2:
		arg := uint32(1000 + len(v.pings))
		v.pings = append(v.pings, arg)
		v.out = append(v.out, pingFrame(arg)...)
	case 3:
		if !v.goingAway {
			v.goingAway = true
			v.out = append(v.out, frameOf(codec.Header{Kind: codec.KindGoAway}, nil)...)
		}
	}
}

// validFrags are fragment sizes that keep every frame within maxFrame even
// when an incompressible part grows a little under s2.
var validFrags = [4]int{0, 1000, 4096, 8000}

func (v *validBuilder) call() {
	m := validMethods[int(v.byte())%len(validMethods)]
	fl := v.byte()
	size := int(v.u16()) % (maxMessage + 1)
	seed := v.byte()
	isStream := (m == mWatch) != (fl&8 != 0)
	if v.calls == maxCalls || (isStream && v.streams == maxStreams) {
		return // refusals by load are not deterministic
	}
	var md codec.Metadata
	if fl&2 != 0 {
		md = metadataOf(v.byte())
	}
	frag := validFrags[fl>>6]
	if frag == 0 && size+codec.CallPrefixSize+2+len(md) > maxFrame*3/4 {
		frag = 8000
	}
	payload := payloadOf(size, seed)
	v.calls++
	if isStream {
		v.streams++
	}
	id := v.next
	v.next += 2
	h := codec.Header{Kind: codec.KindCall, ID: id}
	if fl&1 != 0 {
		h.Flags |= codec.FlagUrgent
	}
	if isStream {
		h.Flags |= codec.FlagStream
	}
	if len(md) > 0 {
		h.Flags |= codec.FlagMetadata
	}
	frames := fragments(h, codec.AppendCallPrefix(nil, m, md), payload, frag, fl&4 != 0)
	done := func() { v.admit(id, m, isStream, payload) }
	v.out = append(v.out, frames[0]...)
	// Defer the rest while the acceptor's reassembly bounds allow: at most
	// three messages of at most maxMessage in reassembly at once.
	if len(frames) > 1 && fl&0x10 != 0 && len(v.pend) < 3 {
		v.pend = append(v.pend, &validMsg{id: id, frames: frames[1:], done: done})
		return
	}
	for _, f := range frames[1:] {
		v.out = append(v.out, f...)
	}
	done()
}

// admit models the acceptor's answer to a complete call (PROTOCOL.md §3.3,
// §3.7, §6, §7 on GOAWAY from the dialer).
func (v *validBuilder) admit(id uint32, m uint64, isStream bool, payload []byte) {
	errEv := func(c codec.Code) { v.want[id] = []event{{kind: codec.KindError, code: c}} }
	if v.goingAway && id > v.lastID {
		errEv(codec.CodeUnavailable)
		return
	}
	v.lastID = max(v.lastID, id)
	switch {
	case m == mUnknown, isStream != (m == mWatch):
		errEv(codec.CodeUnimplemented)
	case m == mPanic:
		errEv(codec.CodeInternal)
	case m == mWatch:
		n, size, fail := watchShape(payload)
		var evs []event
		for i := range n {
			evs = append(evs, event{kind: codec.KindStreamItem, data: watchItem(i, size)})
		}
		if fail {
			evs = append(evs, event{kind: codec.KindError, code: codec.CodeUnknown})
		} else {
			evs = append(evs, event{kind: codec.KindStreamEnd})
		}
		v.want[id] = evs
	default:
		v.want[id] = []event{{kind: codec.KindReply, data: payload}}
	}
}

// check compares replies with the model.
func (v *validBuilder) check(got *replies) error {
	if len(got.byID) != len(v.want) {
		return fmt.Errorf("answers for %d IDs, want %d", len(got.byID), len(v.want))
	}
	for id, want := range v.want {
		evs := got.byID[id]
		if len(evs) != len(want) {
			return fmt.Errorf("ID %d: got %v, want %v", id, evs, want)
		}
		for i := range want {
			g, w := evs[i], want[i]
			if g.kind != w.kind || g.code != w.code || (g.kind != codec.KindError && !bytes.Equal(g.data, w.data)) {
				return fmt.Errorf("ID %d event %d: got %v, want %v", id, i, g, w)
			}
		}
	}
	pongs := slices.Sorted(slices.Values(got.pongs))
	if !slices.Equal(pongs, v.pings) {
		return fmt.Errorf("PONGs %v, want %v", pongs, v.pings)
	}
	return nil
}

// splitConfig is the dialer of FuzzSplitFeed: the default stream window,
// so that no stream of fuzz.Watch waits for CREDIT.
func splitConfig() *conn.Config {
	c := hostileConfig()
	c.StreamWindow = 0
	return c
}

// feed writes pieces on a fresh connection and collects the answers until
// every call and PING of v is answered.
func feed(t *testing.T, a *acceptor, v *validBuilder, pieces [][]byte) *replies {
	t.Helper()
	p := dialPeer(t, a.addr(), splitConfig())
	defer p.nc.Close()
	sc := a.serverSide(t, p.local)
	got := &replies{byID: map[uint32][]event{}}
	partial := map[uint32]*event{}
	left := len(v.want) + len(v.pings)
	var bad error
	rd := readFrames(p, func(f codec.Frame) bool {
		body := f.Body
		if f.Flags&codec.FlagCompressed != 0 {
			var err error
			n, err := codec.DecompressedLen(body, maxFrame)
			if err == nil {
				body, err = codec.Decompress(make([]byte, 0, n), body, maxFrame)
			}
			if err != nil {
				bad = fmt.Errorf("%v on ID %d: %w", f.Kind, f.ID, err)
				return true
			}
		}
		switch f.Kind {
		case codec.KindPong:
			got.pongs = append(got.pongs, f.Arg)
			left--
		case codec.KindReply, codec.KindStreamItem:
			e := &event{kind: f.Kind, data: append([]byte(nil), body...)}
			if f.Flags&codec.FlagMore != 0 {
				partial[f.ID] = e
				return false
			}
			got.byID[f.ID] = append(got.byID[f.ID], *e)
			if f.Kind == codec.KindReply {
				left--
			}
		case codec.KindContinuation:
			e := partial[f.ID]
			if e == nil {
				bad = fmt.Errorf("CONTINUATION on ID %d without a first fragment", f.ID)
				return true
			}
			e.data = append(e.data, body...)
			if f.Flags&codec.FlagMore == 0 {
				delete(partial, f.ID)
				got.byID[f.ID] = append(got.byID[f.ID], *e)
				if e.kind == codec.KindReply {
					left--
				}
			}
		case codec.KindError, codec.KindStreamEnd:
			got.byID[f.ID] = append(got.byID[f.ID], event{kind: f.Kind, code: f.Code, data: append([]byte(nil), body...)})
			left--
		default:
			bad = fmt.Errorf("unexpected %v (code %v) from the acceptor", f.Kind, f.Code)
			return true
		}
		return left == 0
	})
	for _, b := range pieces {
		p.write(b)
	}
	if len(v.want)+len(v.pings) == 0 {
		p.closeWrite() // nothing to wait for
	}
	rd.wait(t)
	p.closeWrite()
	errs := a.release(t, sc)
	switch {
	case rd.parseErr != nil:
		t.Fatalf("acceptor sent bytes that are not a frame within our limits: %v", rd.parseErr)
	case bad != nil:
		t.Fatal(bad)
	case left != 0:
		t.Fatalf("%d answers missing when reading stopped (%v); the acceptor reported %v; got %v", left, rd.err, errs, got.byID)
	case len(errs) != 0:
		t.Fatalf("valid input, yet the acceptor reported %v", errs)
	}
	return got
}

// sameReplies compares two runs exactly, ERROR bodies included.
func sameReplies(a, b *replies) error {
	for id, evs := range a.byID {
		if !slices.EqualFunc(evs, b.byID[id], func(x, y event) bool {
			return x.kind == y.kind && x.code == y.code && bytes.Equal(x.data, y.data)
		}) {
			return fmt.Errorf("ID %d: %v, whole gave %v", id, b.byID[id], evs)
		}
	}
	return nil
}
