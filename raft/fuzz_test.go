package raft

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode: the first byte picks a decoder from wireCodecs (modulo their
// number), the rest is its input. No decoder panics; every failure wraps
// ErrMalformed; whatever decodes re-encodes to the same bytes (the encoding
// is canonical) and decodes again to the same value. Seeds: every sample and
// golden message, and testdata/fuzz/FuzzDecode (committed regressions).
func FuzzDecode(f *testing.F) {
	index := map[string]byte{}
	for i, c := range wireCodecs {
		index[c.name] = byte(i)
	}
	for _, s := range samples() {
		f.Add(append([]byte{index[s.codec]}, wireCodecs[index[s.codec]].encode(nil, s.v)...))
	}
	for _, v := range goldenVectors() {
		f.Add(append([]byte{index[v.codec]}, wireCodecs[index[v.codec]].encode(nil, v.v)...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		c := wireCodecs[int(data[0])%len(wireCodecs)]
		in := data[1:]
		v, err := c.decode(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: %x: error %v does not wrap ErrMalformed", c.name, in, err)
			}
			return
		}
		enc := c.encode(nil, v)
		if !bytes.Equal(enc, in) {
			t.Fatalf("%s: %x decodes as %s, which encodes as %x", c.name, in, show(v), enc)
		}
		again, err := c.decode(enc)
		if err != nil {
			t.Fatalf("%s: re-encoding %x does not decode: %v", c.name, enc, err)
		}
		if !sameMsg(again, v) {
			t.Fatalf("%s: %x decodes as %s, then as %s", c.name, in, show(v), show(again))
		}
	})
}
