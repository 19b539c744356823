package codec

import (
	"bytes"
	"errors"
	"testing"
)

func TestCallRoundTrip(t *testing.T) {
	md, _ := AppendMetadata(nil, "a", []byte("1"))
	md, _ = AppendMetadata(md, "b", nil)
	md, _ = AppendMetadata(md, "a", []byte("2"))
	body := AppendCallPrefix(nil, 0xdeadbeefcafef00d, md)
	if len(body) != CallPrefixLen(md) {
		t.Fatalf("CallPrefixLen %d, appended %d", CallPrefixLen(md), len(body))
	}
	body = append(body, "payload"...)
	c, err := ParseCall(Header{Kind: KindCall, Flags: FlagMetadata}, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.Method != 0xdeadbeefcafef00d || string(c.Payload) != "payload" {
		t.Fatalf("got %+v", c)
	}
	if v, ok := c.Metadata.Get("a"); !ok || string(v) != "1" {
		t.Fatalf("Get(a) = %q %v", v, ok)
	}
	if v, ok := c.Metadata.Get("b"); !ok || len(v) != 0 {
		t.Fatalf("Get(b) = %q %v", v, ok)
	}
	if _, ok := c.Metadata.Get("zz"); ok {
		t.Fatal("Get(zz) found")
	}
	n := 0
	for range c.Metadata.All() {
		n++
	}
	if n != 3 {
		t.Fatalf("All yielded %d entries", n)
	}
}

func TestCallRejects(t *testing.T) {
	h := Header{Kind: KindCall, Flags: FlagMetadata}
	base := AppendCallPrefix(nil, 1, nil)
	cases := map[string][]byte{
		"short":                base[:7],
		"no md length":         append(base, 0),
		"md length past end":   append(base, 0, 10, 1, 'a'),
		"md entry key len 0":   append(base, 0, 3, 0, 0, 0),
		"md entry value short": append(base, 0, 4, 1, 'a', 0, 9),
		"md too large":         append(base, 0xff, 0xff),
	}
	for name, b := range cases {
		if _, err := ParseCall(h, b); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if _, err := AppendMetadata(nil, "", nil); err == nil {
		t.Error("empty key accepted")
	}
	if _, err := AppendMetadata(nil, "k", make([]byte, MaxMetadataSize)); err == nil {
		t.Error("oversize metadata accepted")
	}
}

func TestErrorBody(t *testing.T) {
	b := AppendErrorBody(nil, "kv.ErrNotFound", "missing")
	if len(b) != ErrorBodyLen("kv.ErrNotFound", "missing") {
		t.Fatal("ErrorBodyLen")
	}
	e, err := ParseErrorBody(b)
	if err != nil || string(e.Name) != "kv.ErrNotFound" || string(e.Message) != "missing" {
		t.Fatalf("%+v %v", e, err)
	}
	long := string(bytes.Repeat([]byte("x"), MaxErrorMessage+10))
	e, _ = ParseErrorBody(AppendErrorBody(nil, "", long))
	if len(e.Message) != MaxErrorMessage {
		t.Fatalf("message not truncated: %d", len(e.Message))
	}
	for _, bad := range [][]byte{nil, {5, 'a'}} {
		if _, err := ParseErrorBody(bad); !errors.Is(err, ErrProtocol) {
			t.Errorf("%v: got %v", bad, err)
		}
	}
}

func TestPrefaceAndNegotiate(t *testing.T) {
	p := Preface{Min: 1, Max: 3}
	p.Nonce[0], p.Nonce[31] = 7, 9
	enc := AppendPreface(nil, p)
	if len(enc) != PrefaceSize {
		t.Fatalf("preface is %d bytes", len(enc))
	}
	for i := range PrefaceSize {
		if _, err := ParsePreface(enc[:i]); !errors.Is(err, ErrNeedMore) {
			t.Fatalf("prefix %d: %v", i, err)
		}
	}
	got, err := ParsePreface(enc)
	if err != nil || got != p {
		t.Fatalf("%+v %v", got, err)
	}
	bad := bytes.Clone(enc)
	bad[0] = 'X'
	if _, err := ParsePreface(bad); !errors.Is(err, ErrBadMagic) {
		t.Fatalf("bad magic: %v", err)
	}
	inverted := AppendPreface(nil, Preface{Min: 3, Max: 2})
	if _, err := ParsePreface(inverted); !errors.Is(err, ErrBadHello) {
		t.Fatalf("inverted range: %v", err)
	}
	if v, ok := Negotiate(Preface{Min: 1, Max: 3}, Preface{Min: 2, Max: 5}); !ok || v != 3 {
		t.Fatalf("negotiate = %d %v", v, ok)
	}
	if _, ok := Negotiate(Preface{Min: 1, Max: 1}, Preface{Min: 2, Max: 2}); ok {
		t.Fatal("disjoint ranges negotiated")
	}
}

func TestHelloRoundTrip(t *testing.T) {
	h := Hello{
		Version: 1, Features: FeatureS2, NodeID: "node-1", AppVersion: "v1.2.3",
		MaxFrame: DefaultMaxFrameSize, MaxMessage: DefaultMaxMessageSize, StreamWindow: 1 << 18,
		MaxCalls: 1024, MaxStreams: 128, Methods: []uint64{1, 2, MethodID("kv.Get")},
	}
	h.Proof[3] = 1
	enc, err := AppendHello(nil, &h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseHello(enc)
	if err != nil {
		t.Fatal(err)
	}
	if got.NodeID != h.NodeID || got.AppVersion != h.AppVersion || got.Proof != h.Proof ||
		got.Version != 1 || got.Features != FeatureS2 || got.MaxFrame != h.MaxFrame ||
		got.MaxMessage != h.MaxMessage || got.StreamWindow != h.StreamWindow ||
		got.MaxCalls != 1024 || got.MaxStreams != 128 || len(got.Methods) != 3 || got.Methods[2] != h.Methods[2] {
		t.Fatalf("got %+v", got)
	}
	// Unknown tags are skipped.
	withUnknown := append(bytes.Clone(enc), 200, 0, 2, 'h', 'i')
	if _, err := ParseHello(withUnknown); err != nil {
		t.Fatalf("unknown tag: %v", err)
	}
}

func TestHelloRejects(t *testing.T) {
	cases := map[string][]byte{
		"truncated tlv":    {tagNodeID, 0},
		"length past end":  {tagNodeID, 0, 9, 'a'},
		"duplicate tag":    {tagVersion, 0, 2, 0, 1, tagVersion, 0, 2, 0, 1},
		"short version":    {tagVersion, 0, 1, 1},
		"short proof":      {tagProof, 0, 3, 1, 2, 3},
		"tiny frame size":  {tagMaxFrame, 0, 4, 0, 0, 0, 1},
		"huge frame size":  {tagMaxFrame, 0, 4, 0xff, 0, 0, 0},
		"tiny window":      {tagStreamWindow, 0, 4, 0, 0, 0, 1},
		"methods not x8":   {tagMethods, 0, 3, 1, 2, 3},
		"features not u64": {tagFeatures, 0, 2, 0, 1},
		"oversize body":    make([]byte, MaxHelloSize+1),
	}
	for name, b := range cases {
		if _, err := ParseHello(b); !errors.Is(err, ErrBadHello) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

func TestCompression(t *testing.T) {
	src := bytes.Repeat([]byte("hawser compresses repetitive payloads "), 100)
	out, ok := Compress(make([]byte, 0, MaxCompressedLen(len(src))), src)
	if !ok || len(out) >= len(src) {
		t.Fatalf("not compressed: %d -> %d", len(src), len(out))
	}
	back, err := Decompress(make([]byte, 0, len(src)), out, len(src))
	if err != nil || !bytes.Equal(back, src) {
		t.Fatalf("decompress: %v", err)
	}
	// Refused by size before decoding: the limit is one byte short.
	if _, err := Decompress(make([]byte, 0, len(src)), out, len(src)-1); !errors.Is(err, ErrDecompressTooBig) {
		t.Fatalf("bomb not refused: %v", err)
	}
	if _, err := Decompress(nil, []byte{0xff, 0xff, 0xff}, 100); !errors.Is(err, ErrProtocol) {
		t.Fatalf("garbage: %v", err)
	}
	random := make([]byte, 1024)
	for i := range random {
		random[i] = byte(i*7919 + i>>3)
	}
	if _, ok := Compress(make([]byte, 0, MaxCompressedLen(64)), random[:64]); ok {
		t.Log("short input compressed (allowed but unexpected)")
	}
}

// A decompression bomb: a small block that claims a huge decoded length is
// refused from its header, before any allocation of that size.
func TestDecompressionBombRefusedBySize(t *testing.T) {
	big := make([]byte, 8<<20)
	bomb, ok := Compress(make([]byte, 0, MaxCompressedLen(len(big))), big)
	if !ok || len(bomb) > 1<<10 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := DecompressedLen(bomb, DefaultMaxFrameSize); !errors.Is(err, ErrDecompressTooBig) {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("refusing a bomb allocated %v times", allocs)
	}
}
