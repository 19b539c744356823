package gossip

import (
	"bytes"
	"testing"
)

// FuzzPacket feeds the packet decoder hostile input three ways: as a raw
// datagram (it must not even decrypt), as the plaintext of an authentic
// datagram (an insider's garbage: every message parser and handler runs on
// it), and as the plaintext of an authentic request (push-pull state, the
// fallback probe). Nothing may panic; every message that parses must
// encode back to the same bytes. Seeds: testdata/fuzz/FuzzPacket and the
// golden messages.
func FuzzPacket(f *testing.F) {
	for _, m := range goldenMessages() {
		f.Add(m.b)
		f.Add(append([]byte{protoVersion}, m.b...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, _ := newLoneNode(t, "node-a")
		g.handlePacket("10.0.0.9:7911", data)
		g.handlePacket("10.0.0.9:7911", g.keys.seal(nil, data, g.ad))
		_, _ = g.handleRequest(g.keys.seal(nil, data, g.ad))
		_, _ = parsePushPull(data, func(pushPullHeader, uint8, alive) {})

		// Round trip of every well-framed message.
		rest := data
		for len(rest) > 0 {
			typ, body, next, err := nextMsg(rest)
			if err != nil {
				break
			}
			rest = next
			again, ok, err := reencode(typ, body)
			if !ok || err != nil {
				continue
			}
			orig := rest[:0:0]
			orig = append(orig, byte(typ), byte(len(body)>>8), byte(len(body)))
			orig = append(orig, body...)
			if !bytes.Equal(again, orig) {
				t.Fatalf("type %d: %x encodes back as %x", typ, orig, again)
			}
		}
	})
}
