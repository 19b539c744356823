package fuzz

import (
	"encoding/binary"
	"errors"
	"runtime"
	"testing"

	"github.com/hawser-rpc/hawser/codec"
)

// A compressed frame whose s2 header claims more than the acceptor's max
// frame size is refused, end to end over TLS, with GOAWAY MessageTooLarge
// and codec.ErrDecompressTooBig reported to OnError, before anything of the
// claimed size is allocated (PROTOCOL.md §3.8). Both a genuine s2 block (8
// MiB of zeros in a few hundred bytes) and a bare header claiming 1 GiB,
// on the first frame of a CALL and on a CONTINUATION.
func TestCompressedClaimOverMaxFrame(t *testing.T) {
	w := getWorld(t)
	genuine := realBomb()
	if len(genuine) > maxFrame/2 {
		t.Fatalf("the s2 block of 8 MiB of zeros is %d bytes; the test needs it well within a frame", len(genuine))
	}
	claim := binary.AppendUvarint(nil, 1<<30)
	claim = append(claim, 0, 0, 0, 0)
	first := codec.Header{Kind: codec.KindCall, ID: 1, Flags: codec.FlagMore}
	partial := frameOf(first, append(callPrefix(mEcho, false, nil), "start"...))
	cases := []struct {
		name    string
		claimed uint64
		bytes   []byte
	}{
		{"genuine block on a CALL", 8 << 20, frameOf(codec.Header{Kind: codec.KindCall, ID: 1, Flags: codec.FlagCompressed}, append(callPrefix(mEcho, false, nil), genuine...))},
		{"bare claim on a CALL", 1 << 30, frameOf(codec.Header{Kind: codec.KindCall, ID: 1, Flags: codec.FlagCompressed}, append(callPrefix(mEcho, false, nil), claim...))},
		{"genuine block on a CONTINUATION", 8 << 20, append(partial, frameOf(codec.Header{Kind: codec.KindContinuation, ID: 1, Flags: codec.FlagCompressed}, genuine)...)},
		{"bare claim on a CONTINUATION", 1 << 30, append(partial, frameOf(codec.Header{Kind: codec.KindContinuation, ID: 1, Flags: codec.FlagCompressed}, claim)...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := dialPeer(t, w.acc.addr(), hostileConfig())
			defer p.nc.Close()
			sc := w.acc.serverSide(t, p.local)
			var goAway codec.Code
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			rd := readFrames(p, func(f codec.Frame) bool {
				if f.Kind == codec.KindGoAway {
					goAway = f.Code
				}
				return false
			})
			p.write(c.bytes)
			rd.wait(t)
			errs := w.acc.release(t, sc)
			runtime.ReadMemStats(&after)
			if rd.timedOut {
				t.Fatal("the acceptor kept the connection")
			}
			if goAway != codec.CodeMessageTooLarge {
				t.Fatalf("GOAWAY code %v, want %v", goAway, codec.CodeMessageTooLarge)
			}
			if len(errs) == 0 || !errors.Is(errs[0], codec.ErrDecompressTooBig) {
				t.Fatalf("OnError got %v, want codec.ErrDecompressTooBig", errs)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > c.claimed/8 {
				t.Fatalf("refusing a claim of %d bytes allocated %d", c.claimed, grew)
			}
			w.checkGood(t)
		})
	}
}
