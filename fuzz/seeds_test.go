package fuzz

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser/codec"
)

// The seed corpus of every fuzz target (this package's and codec's) is
// committed under testdata/fuzz/<Target>/seed-<name>, built here from the
// codec package's encoders and the golden frames. go test runs each file as
// a test; TestSeedCorpus fails when a file differs from what this code
// builds. Regenerate with:
//
//	go test ./fuzz -run TestSeedCorpus -update-seeds
//
// Other files in those directories (regress-*, and inputs named by their
// hash) are inputs found by fuzzing, kept as they are.
var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpus files (seed-*) under testdata/fuzz")

type seed struct {
	name string
	vals []any // []byte, byte or uint16, in the target's argument order
}

func TestSeedCorpus(t *testing.T) {
	g := golden(t)
	targets := []struct {
		dir   string
		seeds []seed
	}{
		{"testdata/fuzz/FuzzServerConn", serverConnSeeds(g)},
		{"testdata/fuzz/FuzzSplitFeed", splitFeedSeeds()},
		{"testdata/fuzz/FuzzHandshakeAcceptor", acceptorSeeds(g)},
		{"testdata/fuzz/FuzzHandshakeDialer", dialerSeeds(g)},
		{"../codec/testdata/fuzz/FuzzParse", parseSeeds(g)},
		{"../codec/testdata/fuzz/FuzzHandshake", codecHandshakeSeeds(g)},
		{"../codec/testdata/fuzz/FuzzDecompress", decompressSeeds()},
	}
	for _, tg := range targets {
		want := map[string][]byte{}
		for _, s := range tg.seeds {
			if _, dup := want["seed-"+s.name]; dup {
				t.Fatalf("%s: seed %q twice", tg.dir, s.name)
			}
			want["seed-"+s.name] = marshalSeed(s.vals...)
		}
		have, _ := filepath.Glob(filepath.Join(tg.dir, "seed-*"))
		if *updateSeeds {
			if err := os.MkdirAll(tg.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, p := range have {
				if _, ok := want[filepath.Base(p)]; !ok {
					_ = os.Remove(p)
				}
			}
			for name, b := range want {
				if err := os.WriteFile(filepath.Join(tg.dir, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		for _, p := range have {
			if _, ok := want[filepath.Base(p)]; !ok {
				t.Errorf("%s is no longer built; run go test ./fuzz -run TestSeedCorpus -update-seeds", p)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(want)) {
			got, err := os.ReadFile(filepath.Join(tg.dir, name))
			if err != nil || !bytes.Equal(got, want[name]) {
				t.Errorf("%s/%s is missing or stale; run go test ./fuzz -run TestSeedCorpus -update-seeds", tg.dir, name)
			}
		}
	}
}

// marshalSeed writes the "go test fuzz v1" corpus file format.
func marshalSeed(vals ...any) []byte {
	b := []byte("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			b = fmt.Appendf(b, "[]byte(%q)\n", v)
		case byte:
			b = fmt.Appendf(b, "byte(%q)\n", v)
		case uint16:
			b = fmt.Appendf(b, "uint16(%d)\n", v)
		default:
			panic(fmt.Sprintf("seed value of type %T", v))
		}
	}
	return b
}

// golden returns the golden frames of codec/testdata/golden.txt by name.
func golden(t *testing.T) map[string][]byte {
	f, err := os.Open("../codec/testdata/golden.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hx, ok := strings.Cut(line, " ")
		b, err := hex.DecodeString(hx)
		if !ok || err != nil {
			t.Fatalf("golden line %q", line)
		}
		g[name] = b
	}
	for _, name := range []string{"preface", "hello", "hello_ack", "call", "reply", "cancel", "credit", "ping", "goaway", "goaway_error"} {
		if g[name] == nil {
			t.Fatalf("golden frame %q missing", name)
		}
	}
	return g
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// Hostile program notation (buildHostile).

// callOp is an opCall: method indexes callMethods; flags are the call's
// flags byte (fUrgent ... and frag(i) for fragSizes[i]); id is an ID
// selector (idFresh ...); deadline indexes deadlines.
type callOp struct {
	deferRest bool
	method    byte
	flags     byte
	id        byte
	size      uint16
	seed      byte
	deadline  byte
	md        byte // metadataOf selector, with fMeta
}

const (
	fUrgent = 1
	fMeta   = 2
	fComp   = 4
	fFlip   = 8 // STREAM flag opposite to the method's kind
	fBig    = 0x10

	idFresh = 0
	idLast  = 0xc0
	idEven  = 0xf0
	idZero  = 0xff

	methodEcho, methodInline, methodOrdered, methodWatch, methodBlock, methodPanic, methodUnknown = 0, 1, 2, 3, 4, 5, 6
)

func frag(i byte) byte { return i << 5 }

func (c callOp) b() []byte {
	op := byte(opCall)
	if c.deferRest {
		op |= 1 << 4
	}
	out := []byte{op, c.method, c.flags, c.id, byte(c.size >> 8), byte(c.size), c.seed, c.deadline}
	if c.flags&fMeta != 0 {
		out = append(out, c.md)
	}
	return out
}

// op is any other operation: its opcode, modifier nibble and operands.
func op(code, mod byte, operands ...byte) []byte {
	return append([]byte{code | mod<<4}, operands...)
}

func hostile(name string, prog, raw []byte) seed { return seed{name, []any{prog, raw}} }

func serverConnSeeds(g map[string][]byte) []seed {
	unknownKind := codec.AppendHeader(nil, codec.Header{Kind: 0xee, ID: 1})
	garbage := make([]byte, 256)
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	garbage[4] = 0xee
	return []seed{
		hostile("call", callOp{method: methodEcho, size: 64, seed: 2}.b(), nil),
		hostile("call-inline-urgent-metadata", callOp{method: methodInline, flags: fUrgent | fMeta, size: 100, seed: 4, md: 0x0b}.b(), nil),
		hostile("call-ordered-pipeline", cat(callOp{method: methodOrdered, size: 10, seed: 6}.b(), callOp{method: methodOrdered, size: 20, seed: 8}.b(), callOp{method: methodOrdered, size: 30, seed: 10}.b()), nil),
		hostile("call-fragmented", callOp{method: methodEcho, flags: frag(5), size: 16384, seed: 8}.b(), nil),
		hostile("call-interleaved", cat(
			callOp{deferRest: true, method: methodEcho, flags: frag(4), size: 3000, seed: 10}.b(),
			callOp{deferRest: true, method: methodOrdered, flags: frag(4) | fComp, size: 3000, seed: 12}.b(),
			op(opContinue, 0, 1), op(opContinue, 0, 0), op(opContinue, 0, 1)), nil),
		hostile("call-compressed", callOp{method: methodEcho, flags: fComp, size: 4096, seed: 2}.b(), nil),
		hostile("call-compressed-fragmented-metadata", callOp{method: methodEcho, flags: fComp | fMeta | frag(5), size: 32768, seed: 2, md: 0x2b}.b(), nil),
		hostile("message-too-large", callOp{method: methodEcho, flags: fBig | frag(6), size: 0x9000, seed: 2}.b(), nil),
		hostile("frame-too-large", callOp{method: methodEcho, size: 20480, seed: 2}.b(), nil),
		hostile("stream-credited", op(opStream, 0, 0x07, 0xff, 0), nil),
		// A CREDIT for cost the stream never sent: 7 items of 128 bytes
		// cost 1008 < W/4 in all, and fuzz.WatchHold is still in flight
		// when the CREDIT arrives, so it raises the window above W (§3.7)
		// whatever the handler has sent by then.
		hostile("stream-credit-early", op(opStream, 8, 0x07, 0x10, 1), nil),
		hostile("stream-error-end", op(opStream, 0, 0x81, 0x10, 0), nil),
		hostile("stream-cancel", cat(op(opStream, 0, 0x07, 0xff, 0), op(opCancel, 0, 0)), nil),
		// A CREDIT of W for a stream in flight (held) that sent one item of
		// 8 bytes: always above W.
		hostile("stream-credit-overflow", op(opStream, 1|8, 1, 1, 1), nil),
		// Held streams, so the first MaxStreams are still in flight when the
		// next one arrives.
		hostile("streams-over-max", bytes.Repeat(op(opStream, 8, 0, 0, 0), maxStreams+1), nil),
		hostile("credit-for-unary", cat(callOp{method: methodBlock}.b(), op(opCredit, 0, 0, 0)), nil),
		hostile("credit-zero", cat(op(opStream, 0, 1, 1, 0), op(opCredit, 0, 0, 3)), nil),
		hostile("ping-pong", cat(op(opPing, 0, 0, 7), op(opPong, 0, 0, 7)), nil),
		hostile("goaway-then-call", cat(op(opGoAway, 1, 0, 0, 0), callOp{method: methodEcho, size: 8, seed: 2}.b()), nil),
		hostile("goaway-malformed-body", op(opGoAway, 2, 17, 0, 41), nil),
		hostile("cancel-partial-then-continue", cat(
			callOp{deferRest: true, method: methodEcho, flags: frag(4), size: 3000, seed: 2}.b(),
			op(opCancel, 0, 0), op(opContinue, 0, 0)), nil),
		hostile("cancel-blocked", cat(callOp{method: methodBlock}.b(), op(opCancel, 0, 0)), nil),
		hostile("calls-over-max", op(opBurst, 0, 39, methodBlock), nil),
		hostile("panic", callOp{method: methodPanic, size: 1}.b(), nil),
		hostile("unknown-method", callOp{method: methodUnknown, size: 1}.b(), nil),
		hostile("stream-flag-mismatch", cat(callOp{method: methodEcho, flags: fFlip}.b(), callOp{method: methodWatch, flags: fFlip}.b()), nil),
		hostile("duplicate-id", cat(callOp{method: methodBlock}.b(), op(opRepeat, 0)), nil),
		hostile("even-id", callOp{method: methodEcho, id: idEven}.b(), nil),
		hostile("zero-id", callOp{method: methodEcho, id: idZero}.b(), nil),
		hostile("deadline-expired", callOp{method: methodBlock, deadline: 2}.b(), nil),
		hostile("bomb-call", op(opBomb, 2), nil),
		hostile("bomb-claim", op(opBomb, 0, 2, 0), nil),
		hostile("bomb-malformed", op(opBomb, 0, 3, 4, 1, 2, 3, 4), nil),
		hostile("bomb-continuation", cat(
			callOp{deferRest: true, method: methodEcho, flags: frag(4) | fComp, size: 3000, seed: 2}.b(),
			op(opBomb, 3, 0, 0, 0)), nil),
		hostile("hello-after-handshake", op(opHello, 0), nil),
		hostile("reply-from-dialer", cat(callOp{method: methodBlock}.b(), op(opWrongDir, 0, 0, 0, 10)), nil),
		hostile("error-from-dialer", op(opWrongDir, 0, 1, 0, 3), nil),
		hostile("orphan-continuation", op(opContinue, 0, 0, 5), nil),
		hostile("header-length-lies", op(opRawHeader, 1, 3, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x40, 0), nil),
		hostile("bad-metadata", cat(callOp{method: methodEcho, flags: fMeta, size: 4, seed: 2, md: 0x05}.b(), op(opMutate, 1, 0, 24, 0xff)), nil),
		hostile("truncated", cat(callOp{method: methodEcho, size: 100, seed: 2}.b(), op(opTruncate, 0, 0, 50)), nil),
		hostile("unknown-kind", nil, unknownKind),
		hostile("garbage", nil, garbage),
		hostile("golden-frames", nil, cat(g["call"], g["cancel"], g["credit"], g["ping"], g["goaway"], g["goaway_error"])),
		// Pool handlers returning while the connection closes on a
		// violation (conn.TestCloseWhileHandlersFinish).
		hostile("close-while-handlers-finish", op(opBurst, 0, 15, methodEcho), unknownKind),
		// CREDIT arriving as stream handlers return (conn.TestCreditWhileStreamEnds).
		hostile("credit-while-streams-end", cat(op(opStream, 0, 0x07, 0x40, 0), op(opStream, 0, 0x07, 0x40, 0), op(opStream, 0, 0x07, 0x40, 0)), nil),
	}
}

// Valid program notation (buildValid): vcall is a call op, then
// opcodes 1 (continue), 2 (ping), 3 (goaway).
func vcall(method, flags byte, size uint16, seed byte, md ...byte) []byte {
	return append([]byte{0, method, flags, byte(size >> 8), byte(size), seed}, md...)
}

const (
	vEcho, vInline, vOrdered, vWatch, vPanic, vUnknown = 0, 1, 2, 3, 4, 5
	vDefer                                             = 0x10
)

func vfrag(i byte) byte { return i << 6 }

func cuts(offs ...uint16) []byte {
	var b []byte
	for _, o := range offs {
		b = append(b, byte(o>>8), byte(o))
	}
	return b
}

func splitFeedSeeds() []seed {
	s := func(name string, prog, cuts []byte) seed { return seed{name, []any{prog, cuts}} }
	return []seed{
		s("echo-modes", cat(vcall(vEcho, 0, 100, 2), vcall(vInline, 0, 100, 4), vcall(vOrdered, 0, 100, 6)), cuts(1, 15, 16, 17, 100, 131)),
		s("fragmented-interleaved-compressed", cat(
			vcall(vEcho, vDefer|fComp|vfrag(1), 4000, 3),
			vcall(vOrdered, vDefer|vfrag(2), 20000, 6),
			vcall(vInline, vDefer|fComp|vfrag(3), 30000, 8),
			[]byte{1, 0, 1, 1, 1, 2, 1, 0}), cuts(0x1000, 0x2000, 0x4001, 0x5000, 0x7ff0)),
		s("streams", cat(vcall(vWatch, 0, 2, 7), vcall(vWatch, fComp, 2, 0x86)), cuts(20, 40)),
		s("metadata-urgent", cat(vcall(vInline, fUrgent|fMeta, 50, 2, 0x0b), vcall(vEcho, fMeta|fComp|vfrag(1), 3000, 4, 0x2a)), cuts(16, 24, 26, 90, 1100)),
		s("goaway", cat(vcall(vEcho, 0, 10, 2), []byte{3}, vcall(vEcho, 0, 10, 2), []byte{2}), cuts(34, 40, 50)),
		s("goaway-interleaved", cat(vcall(vEcho, vDefer|vfrag(1), 3000, 2), vcall(vEcho, 0, 10, 4), []byte{3, 1, 0}, vcall(vEcho, 0, 10, 6)), cuts(1030, 1040, 1060)),
		s("errors", cat(vcall(vPanic, 0, 1, 2), vcall(vUnknown, 0, 1, 2), vcall(vEcho, fFlip, 1, 2), vcall(vWatch, fFlip, 2, 2)), cuts(10, 30, 50)),
		s("pings", []byte{2, 2, 2}, cuts(1, 2, 3, 8, 15, 16, 17, 40)),
		s("max-message", vcall(vEcho, fComp|vfrag(3), 0xffff, 2), cuts(0x100, 0x1000, 0x1fff)),
		s("one-byte-pieces", vcall(vInline, 0, 4, 2), cuts(1, 2, 3, 4, 5, 6, 7, 8)),
	}
}

func acceptorSeeds(g map[string][]byte) []seed {
	s := func(name string, mode byte, data []byte) seed { return seed{name, []any{mode, data}} }
	helloBody := g["hello"][codec.HeaderSize:]
	return []seed{
		s("not-hawser", 0, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")),
		s("preface-version-mismatch", 0, codec.AppendPreface(nil, codec.Preface{Min: 2, Max: 3})),
		s("preface-min-zero", 0, codec.AppendPreface(nil, codec.Preface{Min: 0, Max: 1})),
		s("preface-partial", 0, []byte("HWSR\x00")),
		s("preface-then-call", 0, cat(testPreface, g["call"])),
		s("call-before-hello", 1, g["call"]),
		s("hello-too-large", 1, codec.AppendHeader(nil, codec.Header{Kind: codec.KindHello, Length: 70000})),
		s("hello-ack-instead", 1, g["hello_ack"]),
		s("goaway-instead", 1, g["goaway_error"]),
		s("hello-wrong-proof", 2, helloBody),
		s("hello-repeated-tag", 2, []byte{3, 0, 1, 'a', 3, 0, 1, 'b'}),
		s("hello-field-past-body", 2, []byte{3, 0, 9, 'a'}),
		s("hello-bad-maxframe", 2, []byte{6, 0, 4, 0, 0, 0, 1}),
		s("hello-empty", 2, nil),
		s("auth-fails-then-call", 3, cat(make([]byte, codec.ProofSize), g["call"])),
	}
}

func dialerSeeds(g map[string][]byte) []seed {
	s := func(name string, mode byte, data []byte) seed { return seed{name, []any{mode, data}} }
	goAway := func(code codec.Code, msg string) []byte {
		return cat([]byte{byte(code >> 8), byte(code)}, codec.AppendErrorBody(nil, "", msg))
	}
	return []seed{
		s("hello-ack-wrong-proof", 0, g["hello_ack"]),
		s("hello-ack-wrong-proof-s2", 0x12, g["hello_ack"][codec.HeaderSize:]),
		s("goaway-unauthenticated", 3, goAway(codec.CodeUnauthenticated, "cluster-key proof does not match")),
		s("goaway-version-mismatch", 3, goAway(codec.CodeVersionMismatch, "1..1 vs 2..3")),
		s("goaway-protocol", 3, goAway(codec.CodeProtocol, "malformed HELLO")),
		s("goaway-graceful", 3, []byte{0, 0}),
		s("goaway-unknown-code", 3, goAway(0x1234, "from the future")),
		s("goaway-malformed-body", 3, []byte{0, 17, 200, 'x'}),
		s("preface-version-mismatch", 1, codec.AppendPreface(nil, codec.Preface{Min: 2, Max: 3})),
		s("not-hawser", 1, []byte("HTTP/1.1 400 Bad Request\r\n\r\n")),
		s("reply-instead", 0, g["reply"]),
		s("frame-too-large", 0, codec.AppendHeader(nil, codec.Header{Kind: codec.KindHelloAck, Length: 70000})),
		s("hello-ack-malformed", 2, []byte{1, 0, 3, 0, 1, 0}),
		s("hello-ack-empty", 2, nil),
	}
}

func parseSeeds(g map[string][]byte) []seed {
	var out []seed
	var all []byte
	for _, name := range slices.Sorted(maps.Keys(g)) {
		if name == "preface" {
			continue
		}
		out = append(out, seed{"golden-" + name, []any{g[name], uint16(len(g[name]) / 2)}})
		all = append(all, g[name]...)
	}
	return append(out, seed{"golden-all", []any{all, uint16(37)}})
}

func codecHandshakeSeeds(g map[string][]byte) []seed {
	return []seed{
		{"golden-preface", []any{g["preface"]}},
		{"golden-hello", []any{g["hello"][codec.HeaderSize:]}},
		{"golden-hello-ack", []any{g["hello_ack"][codec.HeaderSize:]}},
	}
}

func decompressSeeds() []seed {
	claim := append([]byte{0x80, 0x80, 0x80, 0x80, 0x08}, 0, 0, 0) // uvarint 1<<31
	return []seed{
		{"bomb-8MiB-zeros", []any{realBomb()}},
		{"claim-2GiB", []any{claim}},
	}
}

// The seeds of FuzzServerConn reach the states they are named after, so
// the corpus keeps covering them as the program notation evolves.
func TestServerConnSeedsReachTheirState(t *testing.T) {
	w := getWorld(t)
	seeds := map[string]seed{}
	for _, s := range serverConnSeeds(golden(t)) {
		seeds[s.name] = s
	}
	goAway := func(c codec.Code) func(*observed) bool {
		return func(o *observed) bool { return o.gotGoAwy && o.goAway == c }
	}
	errCode := func(c codec.Code) func(*observed) bool {
		return func(o *observed) bool { return !o.gotGoAwy && o.errCodes[c] }
	}
	kind := func(k codec.Kind) func(*observed) bool {
		return func(o *observed) bool { return !o.gotGoAwy && o.kinds[k] }
	}
	want := map[string]func(*observed) bool{
		"call":                                kind(codec.KindReply),
		"call-inline-urgent-metadata":         kind(codec.KindReply),
		"call-ordered-pipeline":               kind(codec.KindReply),
		"call-fragmented":                     kind(codec.KindContinuation),
		"call-interleaved":                    kind(codec.KindReply),
		"call-compressed":                     kind(codec.KindReply),
		"call-compressed-fragmented-metadata": kind(codec.KindContinuation),
		"message-too-large":                   goAway(codec.CodeMessageTooLarge),
		"frame-too-large":                     goAway(codec.CodeFrameTooLarge),
		"stream-credited":                     kind(codec.KindStreamEnd),
		"stream-credit-early":                 goAway(codec.CodeProtocol),
		"stream-error-end":                    errCode(codec.CodeUnknown),
		"stream-credit-overflow":              goAway(codec.CodeProtocol),
		"streams-over-max":                    errCode(codec.CodeResourceExhausted),
		"credit-for-unary":                    goAway(codec.CodeProtocol),
		"credit-zero":                         goAway(codec.CodeProtocol),
		"ping-pong":                           kind(codec.KindPong),
		"goaway-then-call":                    errCode(codec.CodeUnavailable),
		"cancel-partial-then-continue":        goAway(codec.CodeProtocol),
		"calls-over-max":                      errCode(codec.CodeResourceExhausted),
		"panic":                               errCode(codec.CodeInternal),
		"unknown-method":                      errCode(codec.CodeUnimplemented),
		"stream-flag-mismatch":                errCode(codec.CodeUnimplemented),
		"duplicate-id":                        goAway(codec.CodeProtocol),
		"even-id":                             goAway(codec.CodeProtocol),
		"zero-id":                             goAway(codec.CodeProtocol),
		"deadline-expired":                    errCode(codec.CodeDeadlineExceeded),
		"bomb-call":                           goAway(codec.CodeMessageTooLarge),
		"bomb-claim":                          goAway(codec.CodeMessageTooLarge),
		"bomb-malformed":                      goAway(codec.CodeProtocol),
		"bomb-continuation":                   goAway(codec.CodeMessageTooLarge),
		"hello-after-handshake":               goAway(codec.CodeProtocol),
		"reply-from-dialer":                   goAway(codec.CodeProtocol),
		"error-from-dialer":                   goAway(codec.CodeProtocol),
		"orphan-continuation":                 goAway(codec.CodeProtocol),
		"bad-metadata":                        goAway(codec.CodeProtocol),
		"unknown-kind":                        goAway(codec.CodeProtocol),
		"garbage":                             goAway(codec.CodeProtocol),
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		s, ok := seeds[name]
		if !ok {
			t.Errorf("no seed %q", name)
			continue
		}
		prog, raw := s.vals[0].([]byte), s.vals[1].([]byte)
		obs := runHostile(t, w.acc, append(buildHostile(prog), raw...))
		if !want[name](obs) {
			t.Errorf("seed %s: got GOAWAY %v (%v), ERROR codes %v, kinds %v", name, obs.goAway, obs.gotGoAwy, obs.errCodes, obs.kinds)
		}
	}
	w.checkGood(t)
}

// TestCreditAfterStreamEndIgnored is the other ordering of the seeds
// stream-credit-early and stream-credit-overflow (which hold their stream in
// flight): the same CREDIT, sent once the stream's handler has returned, is
// for an ID with nothing in flight, so the acceptor ignores it (PROTOCOL.md
// §3.3, §3.7) and the connection stays open. Each step waits for what makes
// the ordering certain, so only that outcome is possible.
func TestCreditAfterStreamEndIgnored(t *testing.T) {
	w := getWorld(t)
	for _, tc := range []struct {
		name   string
		req    [2]byte // fuzz.Watch's request (watchShape): items within W, no CREDIT needed
		credit uint32
	}{
		{"stream-credit-early", [2]byte{0x07, 0x10}, hostileWindow / 4},
		{"stream-credit-overflow", [2]byte{1, 1}, hostileWindow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := dialPeer(t, w.acc.addr(), hostileConfig())
			defer p.nc.Close()
			sc := w.acc.serverSide(t, p.local)
			ended := make(chan struct{})
			var goAway *codec.Code // read after rd.done
			rd := readFrames(p, func(f codec.Frame) bool {
				switch f.Kind {
				case codec.KindStreamEnd:
					close(ended)
				case codec.KindGoAway:
					goAway = &f.Code
				}
				return false
			})
			p.write(buildHostile(op(opStream, 0, tc.req[0], tc.req[1], 0))) // ID 1, no CREDIT
			select {
			case <-ended:
			case <-rd.done:
				t.Fatalf("the connection ended before STREAM_END: %v", rd.err)
			case <-time.After(ioTimeout):
				t.Fatal("no STREAM_END")
			}
			// The handler queues STREAM_END before it forgets the call
			// (conn's serverCall.finish): wait until it has.
			deadline := time.Now().Add(ioTimeout)
			for sc.InFlight() > 0 {
				if time.Now().After(deadline) {
					t.Fatal("the stream is still in flight after its STREAM_END")
				}
				time.Sleep(100 * time.Microsecond)
			}
			p.write(frameOf(codec.Header{Kind: codec.KindCredit, ID: 1, Arg: tc.credit}, nil))
			if !rd.pong(t, p, 0) {
				t.Fatalf("the server closed the connection on a CREDIT for an ended stream: %v", rd.err)
			}
			p.closeWrite()
			rd.wait(t)
			for _, err := range w.acc.release(t, sc) {
				if errors.Is(err, codec.ErrProtocol) {
					t.Fatalf("CREDIT for an ended stream reported as a violation: %v", err)
				}
			}
			if goAway != nil && *goAway != codec.CodeOK {
				t.Fatalf("GOAWAY %v after a CREDIT for an ended stream", *goAway)
			}
		})
	}
	w.checkGood(t)
}
