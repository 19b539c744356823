package gossip

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.txt")

// goldenMessages are the messages whose encodings testdata/golden.txt pins
// (PROTOCOL.md cites them by name).
func goldenMessages() []struct {
	name string
	b    []byte
} {
	meta := []byte("role=leader")
	return []struct {
		name string
		b    []byte
	}{
		{"ping", appendPing(nil, 7, "node-a", "node-b")},
		{"indirect_ping", appendIndirectPing(nil, 7, true, "node-a", "10.0.0.1:7911")},
		{"ack", appendSeqMsg(nil, msgAck, 7)},
		{"nack", appendSeqMsg(nil, msgNack, 7)},
		{"alive", appendAlive(nil, 3, protoVersion, "node-a", "10.0.0.1:7911", meta)},
		{"suspect", appendAccusation(nil, msgSuspect, 3, "node-a", "node-b")},
		{"dead", appendAccusation(nil, msgDead, 3, "node-a", "node-b")},
		{"leave", appendLeave(nil, 3, "node-a")},
		{"user", appendUser(nil, "node-b", 1, []byte("hi"))},
		{"packet", appendSeqMsg(appendPing([]byte{protoVersion}, 8, "node-a", "node-b"), msgAck, 7)},
		{"pushpull_request", appendPushPullEntry(
			appendPushPullHeader(beginRequest(nil, msgPushPull), true, "node-b", 1),
			wireAlive, 1, protoVersion, "node-b", "10.0.0.2:7911", nil)},
		{"pushpull_s2_response", append(beginRequest(nil, msgPushPullS2), s2.Encode(nil, appendPushPullEntry(
			appendPushPullHeader(nil, false, "node-a", 1),
			wireAlive, 1, protoVersion, "node-a", "10.0.0.1:7911", nil))...)},
		{"fallback_ping_request", appendPingBody(beginRequest(nil, msgPing), 9, "node-a", "node-b")},
		{"fallback_ack_response", appendSeqBody(beginRequest(nil, msgAck), 9)},
	}
}

func TestGolden(t *testing.T) {
	path := filepath.Join("testdata", "golden.txt")
	if *update {
		var buf bytes.Buffer
		buf.WriteString("# gossip wire format golden vectors (PROTOCOL.md); regenerate with go test -run TestGolden -update\n")
		for _, m := range goldenMessages() {
			fmt.Fprintf(&buf, "%s %x\n", m.name, m.b)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hx, _ := strings.Cut(line, " ")
		b, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatal(err)
		}
		want[name] = b
	}
	for _, m := range goldenMessages() {
		if !bytes.Equal(m.b, want[m.name]) {
			t.Errorf("%s:\n got %x\nwant %x", m.name, m.b, want[m.name])
		}
	}
}

// TestMessagesRoundTrip parses each message back, and checks that every
// strict prefix of a body is refused as truncated and trailing bytes as
// malformed.
func TestMessagesRoundTrip(t *testing.T) {
	for _, m := range goldenMessages() {
		if m.name == "packet" || strings.Contains(m.name, "request") || strings.Contains(m.name, "response") {
			continue
		}
		typ, body, rest, err := nextMsg(m.b)
		if err != nil || len(rest) != 0 {
			t.Fatalf("%s: framing: %v", m.name, err)
		}
		again, ok, err := reencode(typ, body)
		if err != nil || !ok || !bytes.Equal(again, m.b) {
			t.Fatalf("%s: round trip %x -> %x (%v)", m.name, m.b, again, err)
		}
		for i := 0; i < len(body); i++ {
			if _, _, err := reencode(typ, body[:i]); err == nil && typ != msgUser {
				t.Fatalf("%s: prefix of %d bytes parsed", m.name, i)
			}
		}
		if typ != msgUser {
			if _, _, err := reencode(typ, append(bytes.Clone(body), 0)); !errors.Is(err, errMalformed) {
				t.Fatalf("%s: trailing byte: %v", m.name, err)
			}
		}
		for i := 0; i < len(m.b); i++ {
			if _, _, _, err := nextMsg(m.b[:i]); !errors.Is(err, errTruncated) {
				t.Fatalf("%s: framing prefix %d: %v", m.name, i, err)
			}
		}
	}
}

// reencode parses a message and encodes it again; ok is false for types
// this function does not know.
func reencode(t msgType, body []byte) ([]byte, bool, error) {
	switch t {
	case msgPing:
		p, err := parsePing(body)
		return appendPing(nil, p.seq, string(p.target), string(p.source)), true, err
	case msgIndirectPing:
		p, err := parseIndirectPing(body)
		return appendIndirectPing(nil, p.seq, p.nack, string(p.target), string(p.addr)), true, err
	case msgAck, msgNack:
		seq, err := parseSeqMsg(body)
		return appendSeqMsg(nil, t, seq), true, err
	case msgAlive:
		a, err := parseAlive(body)
		return appendAlive(nil, a.inc, a.proto, string(a.id), string(a.addr), a.meta), true, err
	case msgSuspect, msgDead:
		a, err := parseAccusation(body)
		return appendAccusation(nil, t, a.inc, string(a.id), string(a.from)), true, err
	case msgLeave:
		l, err := parseLeave(body)
		return appendLeave(nil, l.inc, string(l.id)), true, err
	case msgUser:
		u, err := parseUser(body)
		return appendUser(nil, string(u.origin), u.seq, u.payload), true, err
	}
	return nil, false, nil
}

func TestFieldLimits(t *testing.T) {
	long := strings.Repeat("x", MaxIDLen+1)
	if _, err := parsePing(appendPing(nil, 1, long, "b")[msgHeaderLen:]); !errors.Is(err, errMalformed) {
		t.Fatalf("long ID: %v", err)
	}
	if _, err := parseAlive(appendAlive(nil, 1, 1, "a", "b", make([]byte, MaxMetaLen+1))[msgHeaderLen:]); !errors.Is(err, errMalformed) {
		t.Fatalf("long meta: %v", err)
	}
	if _, err := parsePing(appendPing(nil, 1, "", "b")[msgHeaderLen:]); !errors.Is(err, errMalformed) {
		t.Fatalf("empty ID: %v", err)
	}
	if _, err := parseAlive(appendAlive(nil, 1, 0, "a", "b", nil)[msgHeaderLen:]); !errors.Is(err, errMalformed) {
		t.Fatalf("protocol version 0: %v", err)
	}
	if _, err := parseIndirectPing([]byte{0, 0, 0, 1, 2, 1, 'a', 1, 'b'}); !errors.Is(err, errMalformed) {
		t.Fatalf("undefined flag: %v", err)
	}
}

func TestPushPullBounds(t *testing.T) {
	body := appendPushPullHeader(nil, false, "x", 3)
	for i := 0; i < 3; i++ {
		body = appendPushPullEntry(body, wireAlive, 1, 1, fmt.Sprint("n", i), "a:1", nil)
	}
	n := 0
	h, err := parsePushPull(body, func(pushPullHeader, uint8, alive) { n++ })
	if err != nil || n != 3 || h.count != 3 || string(h.from) != "x" {
		t.Fatalf("%v %d %+v", err, n, h)
	}
	// Every prefix fails, and visits nothing: a state is applied whole or
	// not at all.
	for i := 0; i < len(body); i++ {
		n = 0
		if _, err := parsePushPull(body[:i], func(pushPullHeader, uint8, alive) { n++ }); err == nil || n != 0 {
			t.Fatalf("prefix %d: %v, %d visited", i, err, n)
		}
	}
	// A count that the bytes cannot hold is refused before anything else.
	huge := appendPushPullHeader(nil, false, "x", maxPushPullMembers)
	if _, err := parsePushPull(huge, nil); !errors.Is(err, errMalformed) {
		t.Fatalf("huge count: %v", err)
	}
	bad := appendPushPullEntry(appendPushPullHeader(nil, false, "x", 1), 9, 1, 1, "n", "a:1", nil)
	if _, err := parsePushPull(bad, nil); !errors.Is(err, errMalformed) {
		t.Fatalf("unknown state: %v", err)
	}
}
