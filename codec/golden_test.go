package codec

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.txt from the encoders")

// goldenVectors are the frames PROTOCOL.md cites by name. Changing an
// encoding changes this file, which is the point: the wire format is frozen
// by it.
func goldenVectors(t *testing.T) []struct {
	name string
	enc  []byte
} {
	md, err := AppendMetadata(nil, "trace", []byte("t1"))
	if err != nil {
		t.Fatal(err)
	}
	hello := Hello{Features: FeatureS2, NodeID: "n1", Proof: [ProofSize]byte{1, 2, 3}, MaxFrame: DefaultMaxFrameSize, StreamWindow: 1 << 18}
	helloBody, err := AppendHello(nil, &hello)
	if err != nil {
		t.Fatal(err)
	}
	ack := Hello{Version: 1, NodeID: "n2", MaxCalls: 1024, MaxStreams: 256, Methods: []uint64{MethodID("echo")}}
	ackBody, err := AppendHello(nil, &ack)
	if err != nil {
		t.Fatal(err)
	}
	login := Hello{NodeID: "app", Username: "alice", Password: "s3cret", StreamWindow: 1 << 18}
	loginBody, err := AppendHello(nil, &login)
	if err != nil {
		t.Fatal(err)
	}
	loginAck := Hello{Version: 1, NodeID: "n2", MaxCalls: 1024, PlatformVersion: 3, Methods: []uint64{MethodID("hawser.platformVersion")}}
	loginAckBody, err := AppendHello(nil, &loginAck)
	if err != nil {
		t.Fatal(err)
	}
	callBody := append(AppendCallPrefix(nil, MethodID("echo"), nil), "hi"...)
	callMD := append(AppendCallPrefix(nil, MethodID("echo"), md), "hi"...)
	f := func(h Header, body []byte) []byte { return Append(nil, Frame{Header: h, Body: body}) }
	return []struct {
		name string
		enc  []byte
	}{
		{"preface", AppendPreface(nil, Preface{Min: 1, Max: 1, Nonce: [32]byte{0xaa}})},
		{"hello", f(Header{Kind: KindHello}, helloBody)},
		{"hello_ack", f(Header{Kind: KindHelloAck}, ackBody)},
		{"hello_login", f(Header{Kind: KindHello}, loginBody)},
		{"hello_ack_client", f(Header{Kind: KindHelloAck}, loginAckBody)},
		{"call", f(Header{Kind: KindCall, ID: 1, Arg: DeadlineArg(50 * time.Millisecond)}, callBody)},
		{"call_metadata_urgent", f(Header{Kind: KindCall, Flags: FlagMetadata | FlagUrgent, ID: 3}, callMD)},
		{"call_stream", f(Header{Kind: KindCall, Flags: FlagStream, ID: 5}, AppendCallPrefix(nil, MethodID("watch"), nil))},
		{"reply", f(Header{Kind: KindReply, ID: 1}, []byte("hi"))},
		{"error", f(Header{Kind: KindError, Code: CodeNotFound, ID: 1}, AppendErrorBody(nil, "kv.NotFound", "no key"))},
		{"stream_item_more", f(Header{Kind: KindStreamItem, Flags: FlagMore, ID: 5}, []byte("ab"))},
		{"continuation", f(Header{Kind: KindContinuation, ID: 5}, []byte("cd"))},
		{"stream_end", f(Header{Kind: KindStreamEnd, ID: 5}, nil)},
		{"cancel", f(Header{Kind: KindCancel, ID: 1}, nil)},
		{"credit", f(Header{Kind: KindCredit, ID: 5, Arg: 65536}, nil)},
		{"ping", f(Header{Kind: KindPing, Arg: 7}, nil)},
		{"pong", f(Header{Kind: KindPong, Arg: 7}, nil)},
		{"goaway", f(Header{Kind: KindGoAway, Arg: 41}, nil)},
		{"goaway_error", f(Header{Kind: KindGoAway, Code: CodeProtocol, Arg: 41}, AppendErrorBody(nil, "", "bad frame"))},
	}
}

func TestGolden(t *testing.T) {
	vectors := goldenVectors(t)
	path := "testdata/golden.txt"
	if *update {
		var b strings.Builder
		b.WriteString("# Golden frames cited by PROTOCOL.md. Regenerate: go test ./codec -run TestGolden -update\n")
		for _, v := range vectors {
			fmt.Fprintf(&b, "%s %s\n", v.name, hex.EncodeToString(v.enc))
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	want := map[string][]byte{}
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, hx, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		b, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatal(err)
		}
		want[name] = b
	}
	if len(want) != len(vectors) {
		t.Fatalf("golden file has %d vectors, code has %d", len(want), len(vectors))
	}
	for _, v := range vectors {
		if !bytes.Equal(want[v.name], v.enc) {
			t.Errorf("%s: encoder gives %x, golden file has %x", v.name, v.enc, want[v.name])
			continue
		}
		if v.name == "preface" {
			if _, err := ParsePreface(v.enc); err != nil {
				t.Errorf("preface: %v", err)
			}
			continue
		}
		fr, n, err := Parse(v.enc, DefaultMaxFrameSize)
		if err != nil || n != len(v.enc) {
			t.Errorf("%s: parse: n=%d err=%v", v.name, n, err)
			continue
		}
		if !bytes.Equal(Append(nil, fr), v.enc) {
			t.Errorf("%s: re-encoding differs", v.name)
		}
	}
}
