package codec

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse: whatever Parse accepts re-encodes to the same bytes and has the
// length its header says; every strict prefix of an accepted frame is
// ErrNeedMore; feeding the input in two pieces gives the same frames as
// whole; anything else is a protocol error, never a panic.
func FuzzParse(f *testing.F) {
	for _, fr := range sampleFrames(f) {
		enc := Append(nil, fr)
		f.Add(enc, uint16(len(enc)/2))
		f.Add(append(enc, enc...), uint16(len(enc)+1))
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, uint16(3))
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		var whole []Frame
		rest := in
		for {
			fr, n, err := Parse(rest, DefaultMaxFrameSize)
			if errors.Is(err, ErrNeedMore) {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("error %v is not a protocol error", err)
				}
				break
			}
			if n != HeaderSize+int(fr.Length) || len(fr.Body) != int(fr.Length) {
				t.Fatalf("consumed %d for length %d", n, fr.Length)
			}
			if !bytes.Equal(Append(nil, fr), rest[:n]) {
				t.Fatal("re-encoding differs")
			}
			for i := range n {
				if _, _, err := Parse(rest[:i], DefaultMaxFrameSize); !errors.Is(err, ErrNeedMore) {
					t.Fatalf("prefix %d of %d: %v", i, n, err)
				}
			}
			if fr.Kind == KindCall {
				_, _ = ParseCall(fr.Header, fr.Body)
			}
			if fr.Kind == KindError {
				_, _ = ParseErrorBody(fr.Body)
			}
			if fr.Kind == KindHello || fr.Kind == KindHelloAck {
				_, _ = ParseHello(fr.Body)
			}
			whole = append(whole, fr)
			rest = rest[n:]
		}
		// Split feeding: the same frames, in the same order.
		c := int(cut) % (len(in) + 1)
		buf := append([]byte(nil), in[:c]...)
		var split []Frame
		feed := func() bool {
			for {
				fr, n, err := Parse(buf, DefaultMaxFrameSize)
				if err != nil {
					return errors.Is(err, ErrNeedMore)
				}
				fr.Body = bytes.Clone(fr.Body)
				split = append(split, fr)
				buf = buf[n:]
			}
		}
		if feed() {
			buf = append(buf, in[c:]...)
			feed()
		}
		if len(split) != len(whole) {
			t.Fatalf("split at %d gave %d frames, whole gave %d", c, len(split), len(whole))
		}
		for i := range split {
			if split[i].Header != whole[i].Header || !bytes.Equal(split[i].Body, whole[i].Body) {
				t.Fatalf("frame %d differs when split", i)
			}
		}
	})
}

// FuzzHandshake: hostile preface and HELLO bytes give a value or a protocol
// error; an accepted HELLO re-encodes to something that parses the same.
func FuzzHandshake(f *testing.F) {
	f.Add(AppendPreface(nil, Preface{Min: 1, Max: 1}))
	h := Hello{Version: 1, Features: FeatureS2, NodeID: "n", MaxFrame: DefaultMaxFrameSize, Methods: []uint64{1, 2}}
	body, _ := AppendHello(nil, &h)
	f.Add(body)
	login := Hello{NodeID: "app", Username: "alice", Password: "s3cret", PlatformVersion: 3}
	body, _ = AppendHello(nil, &login)
	f.Add(body)
	f.Fuzz(func(t *testing.T, in []byte) {
		if _, err := ParsePreface(in); err != nil && !errors.Is(err, ErrNeedMore) && !errors.Is(err, ErrProtocol) {
			t.Fatalf("preface: %v", err)
		}
		got, err := ParseHello(in)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("hello: %v", err)
			}
			return
		}
		enc, err := AppendHello(nil, &got)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseHello(enc)
		if err != nil || again.NodeID != got.NodeID || again.Proof != got.Proof || len(again.Methods) != len(got.Methods) ||
			again.Username != got.Username || again.Password != got.Password || again.PlatformVersion != got.PlatformVersion {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

// FuzzDecompress: hostile s2 blocks are refused by size or decoded within
// the limit; never a panic, never an output past the limit.
func FuzzDecompress(f *testing.F) {
	src := bytes.Repeat([]byte("abcdefgh"), 512)
	enc, _ := Compress(make([]byte, 0, MaxCompressedLen(len(src))), src)
	f.Add(enc)
	bomb, _ := Compress(make([]byte, 0, MaxCompressedLen(1<<20)), make([]byte, 1<<20))
	f.Add(bomb)
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 64 << 10
		n, err := DecompressedLen(in, limit)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatal(err)
			}
			return
		}
		out, err := Decompress(make([]byte, 0, n), in, limit)
		if err == nil && len(out) > limit {
			t.Fatalf("decoded %d bytes past limit", len(out))
		}
	})
}
