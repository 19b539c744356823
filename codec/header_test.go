package codec

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func sampleFrames(t testing.TB) []Frame {
	md, err := AppendMetadata(nil, "trace", []byte("00-abc-01"))
	if err != nil {
		t.Fatal(err)
	}
	call := AppendCallPrefix(nil, MethodID("kv.Get"), md)
	call = append(call, "key"...)
	return []Frame{
		{Header: Header{Kind: KindCall, Flags: FlagMetadata | FlagUrgent, ID: 1, Arg: DeadlineArg(50 * time.Millisecond)}, Body: call},
		{Header: Header{Kind: KindCall, Flags: FlagStream, ID: 3}, Body: AppendCallPrefix(nil, MethodID("kv.Watch"), nil)},
		{Header: Header{Kind: KindReply, ID: 1}, Body: []byte("value")},
		{Header: Header{Kind: KindReply, ID: 5}, Body: nil},
		{Header: Header{Kind: KindError, Code: CodeNotFound, ID: 7}, Body: AppendErrorBody(nil, "kv.ErrNotFound", "no such key")},
		{Header: Header{Kind: KindStreamItem, Flags: FlagMore, ID: 3}, Body: []byte("part")},
		{Header: Header{Kind: KindContinuation, ID: 3}, Body: []byte("rest")},
		{Header: Header{Kind: KindStreamEnd, ID: 3}},
		{Header: Header{Kind: KindCancel, ID: 9}},
		{Header: Header{Kind: KindCredit, ID: 3, Arg: 65536}},
		{Header: Header{Kind: KindPing, Arg: 42}},
		{Header: Header{Kind: KindPong, Arg: 42}},
		{Header: Header{Kind: KindGoAway, Code: CodeShutdown, Arg: 11}, Body: []byte("bye")},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, f := range sampleFrames(t) {
		enc := Append(nil, f)
		if len(enc) != HeaderSize+len(f.Body) {
			t.Fatalf("%v: encoded %d bytes, want %d", f.Kind, len(enc), HeaderSize+len(f.Body))
		}
		got, n, err := Parse(enc, DefaultMaxFrameSize)
		if err != nil {
			t.Fatalf("%v: %v", f.Kind, err)
		}
		if n != len(enc) {
			t.Fatalf("%v: consumed %d of %d", f.Kind, n, len(enc))
		}
		f.Length = uint32(len(f.Body))
		if got.Header != f.Header || !bytes.Equal(got.Body, f.Body) {
			t.Fatalf("round trip: got %+v want %+v", got, f)
		}
	}
}

// Every strict prefix of a valid frame is "need more bytes", never an error
// (STYLE.md, after quic-go).
func TestStrictPrefixNeedsMore(t *testing.T) {
	for _, f := range sampleFrames(t) {
		enc := Append(nil, f)
		for i := range len(enc) {
			if _, _, err := Parse(enc[:i], DefaultMaxFrameSize); !errors.Is(err, ErrNeedMore) {
				t.Fatalf("%v prefix %d/%d: got %v, want ErrNeedMore", f.Kind, i, len(enc), err)
			}
		}
	}
}

// Feeding a stream of frames one byte at a time, and split at every offset,
// yields the same frames as parsing it whole (after nats).
func TestSplitFeeding(t *testing.T) {
	var stream []byte
	frames := sampleFrames(t)
	for _, f := range frames {
		stream = Append(stream, f)
	}
	whole := parseAll(t, [][]byte{stream})
	if len(whole) != len(frames) {
		t.Fatalf("parsed %d frames, want %d", len(whole), len(frames))
	}
	oneByte := make([][]byte, len(stream))
	for i := range stream {
		oneByte[i] = stream[i : i+1]
	}
	if got := parseAll(t, oneByte); !equalFrames(got, whole) {
		t.Fatal("one byte at a time differs from whole")
	}
	for cut := range len(stream) + 1 {
		if got := parseAll(t, [][]byte{stream[:cut], stream[cut:]}); !equalFrames(got, whole) {
			t.Fatalf("split at %d differs from whole", cut)
		}
	}
}

func parseAll(t *testing.T, pieces [][]byte) []Frame {
	t.Helper()
	var buf []byte
	var out []Frame
	for _, p := range pieces {
		buf = append(buf, p...)
		for {
			f, n, err := Parse(buf, DefaultMaxFrameSize)
			if errors.Is(err, ErrNeedMore) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			f.Body = bytes.Clone(f.Body)
			out = append(out, f)
			buf = buf[n:]
		}
	}
	if len(buf) != 0 {
		t.Fatalf("%d bytes left over", len(buf))
	}
	return out
}

func equalFrames(a, b []Frame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Header != b[i].Header || !bytes.Equal(a[i].Body, b[i].Body) {
			return false
		}
	}
	return true
}

func TestParseRejects(t *testing.T) {
	hdr := func(h Header) []byte { return AppendHeader(nil, h) }
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"kind zero", hdr(Header{Kind: 0, ID: 1}), ErrUnknownKind},
		{"kind unknown", hdr(Header{Kind: kindEnd, ID: 1}), ErrUnknownKind},
		{"kind 255", hdr(Header{Kind: 255, ID: 1}), ErrUnknownKind},
		{"stream flag on reply", hdr(Header{Kind: KindReply, Flags: FlagStream, ID: 1}), ErrBadFlags},
		{"undefined flag", hdr(Header{Kind: KindCall, Flags: 0x80, ID: 1, Length: 8}), ErrBadFlags},
		{"flags on ping", hdr(Header{Kind: KindPing, Flags: FlagMore}), ErrBadFlags},
		{"oversize", hdr(Header{Kind: KindReply, ID: 1, Length: DefaultMaxFrameSize + 1}), ErrFrameTooLarge},
		{"max uint32 length", hdr(Header{Kind: KindReply, ID: 1, Length: 1<<32 - 1}), ErrFrameTooLarge},
		{"call without method", hdr(Header{Kind: KindCall, ID: 1, Length: 7}), ErrBadFrame},
		{"call id 0", hdr(Header{Kind: KindCall, Length: 8}), ErrBadFrame},
		{"ping with id", hdr(Header{Kind: KindPing, ID: 3}), ErrBadFrame},
		{"ping with body", hdr(Header{Kind: KindPing, Length: 1}), ErrBadFrame},
		{"credit zero", hdr(Header{Kind: KindCredit, ID: 3}), ErrBadFrame},
		{"error code ok", hdr(Header{Kind: KindError, ID: 3, Length: 1}), ErrBadFrame},
		{"cancel with body", hdr(Header{Kind: KindCancel, ID: 3, Length: 2}), ErrBadFrame},
		{"goaway with id", hdr(Header{Kind: KindGoAway, ID: 3}), ErrBadFrame},
		{"reply with code", hdr(Header{Kind: KindReply, ID: 3, Code: 1}), ErrBadFrame},
	}
	for _, c := range cases {
		_, _, err := Parse(c.in, DefaultMaxFrameSize)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v does not match ErrProtocol", c.name, err)
		}
	}
}

func TestHeaderZeroAlloc(t *testing.T) {
	buf := make([]byte, 0, 64)
	h := Header{Length: 100, Kind: KindReply, ID: 77}
	frame := Append(nil, Frame{Header: h, Body: make([]byte, 100)})
	var sink Header
	allocs := testing.AllocsPerRun(1000, func() {
		buf = AppendHeader(buf[:0], h)
		var fixed [HeaderSize]byte
		PutHeader(fixed[:], h)
		var err error
		sink, err = ParseHeader(frame, DefaultMaxFrameSize)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err = Parse(frame, DefaultMaxFrameSize); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("encoding and parsing a header allocated %v times, want 0", allocs)
	}
	_ = sink
}

func TestDeadlineArg(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want uint32
	}{
		{0, 0}, {-time.Second, 0}, {time.Nanosecond, 1}, {time.Microsecond, 1},
		{1500 * time.Nanosecond, 2}, {50 * time.Millisecond, 50000},
		{MaxDeadline, 1<<32 - 1}, {100 * time.Hour, 1<<32 - 1},
	}
	for _, c := range cases {
		if got := DeadlineArg(c.d); got != c.want {
			t.Errorf("DeadlineArg(%v) = %d, want %d", c.d, got, c.want)
		}
	}
	if ArgDeadline(50000) != 50*time.Millisecond {
		t.Fatal("ArgDeadline")
	}
}

func BenchmarkParseHeader(b *testing.B) {
	frame := Append(nil, Frame{Header: Header{Kind: KindReply, ID: 7}, Body: make([]byte, 64)})
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, _, err := Parse(frame, DefaultMaxFrameSize); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	buf := make([]byte, 0, 256)
	body := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = Append(buf[:0], Frame{Header: Header{Kind: KindReply, ID: 7}, Body: body})
	}
}
