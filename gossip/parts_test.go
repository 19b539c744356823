package gossip

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// Unit tests of the parts: queue, suspicion timer, virtual clock, keyring.

func TestQueueOrderReplaceRetire(t *testing.T) {
	var q queue
	q.push("a", []byte("AAAA"), false)
	q.push("b", []byte("BBBB"), false)
	q.push("self", []byte("SSSS"), true)
	q.push("a", []byte("aaaa"), false) // replaces the queued message about a
	if q.len() != 3 {
		t.Fatalf("len %d", q.len())
	}
	// First this node's own claim, then the newest, least-sent.
	if got := q.fill(nil, 100, 2); string(got) != "SSSSaaaaBBBB" {
		t.Fatalf("first fill %q", got)
	}
	// A budget that fits one message takes the best one that fits.
	if got := q.fill(nil, 4, 2); string(got) != "SSSS" {
		t.Fatalf("small fill %q", got)
	}
	// SSSS has been sent twice: retired. The others go once more.
	if got := q.fill(nil, 100, 2); string(got) != "aaaaBBBB" {
		t.Fatalf("third fill %q", got)
	}
	if q.len() != 0 || len(q.byKey) != 0 {
		t.Fatalf("not retired: %d", q.len())
	}
	// User messages are never replaced and are counted.
	q.push("", []byte("u1"), false)
	q.push("", []byte("u2"), false)
	if q.users != 2 || q.len() != 2 {
		t.Fatal("user messages")
	}
	q.fill(nil, 100, 1)
	if q.users != 0 || q.len() != 0 {
		t.Fatal("user messages not retired")
	}
	if retransmitLimit(4, 64) != 8 || retransmitLimit(4, 5) != 4 {
		t.Fatal("retransmit limit")
	}
}

func TestSuspicionTimeouts(t *testing.T) {
	lo, hi := 2*time.Second, 12*time.Second
	if d := suspicionTimeout(0, 3, lo, hi); d != hi {
		t.Fatalf("no confirmation: %v", d)
	}
	prev := hi
	for n := 1; n <= 3; n++ {
		d := suspicionTimeout(n, 3, lo, hi)
		if d >= prev || d < lo {
			t.Fatalf("n=%d: %v", n, d)
		}
		prev = d
	}
	if d := suspicionTimeout(3, 3, lo, hi); d != lo {
		t.Fatalf("k confirmations: %v", d)
	}
	if d := suspicionMin(4, 64, time.Second); d < 7200*time.Millisecond || d > 7300*time.Millisecond {
		t.Fatalf("min for 64: %v", d)
	}

	// The timer: confirmations shorten it; duplicates do not count.
	clock := NewVirtualClock(time.Unix(0, 0))
	fired := time.Time{}
	s := newSuspicion(clock, "a", 3, lo, hi, func() { fired = clock.Now() })
	clock.RunFor(time.Second)
	if !s.confirm("b") || s.confirm("b") || s.confirm("a") {
		t.Fatal("confirmations")
	}
	s.confirm("c")
	s.confirm("d")
	clock.RunFor(time.Minute)
	if got := fired.Sub(time.Unix(0, 0)); got != lo {
		t.Fatalf("fired after %v, want %v", got, lo)
	}
}

func TestVirtualClockOrderAndStall(t *testing.T) {
	c := NewVirtualClock(time.Unix(0, 0))
	var got []string
	at := func(s string) func() { return func() { got = append(got, s) } }
	c.AfterFunc(3*time.Millisecond, at("c"))
	c.AfterFunc(time.Millisecond, at("a"))
	c.AfterFunc(time.Millisecond, at("a2")) // same time: scheduling order
	stopped := c.AfterFunc(2*time.Millisecond, at("never"))
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop")
	}
	c.RunFor(10 * time.Millisecond)
	if want := "a a2 c"; join(got) != want {
		t.Fatalf("order %q, want %q", join(got), want)
	}
	if c.Now() != time.Unix(0, 0).Add(10*time.Millisecond) {
		t.Fatal("now")
	}

	// A stalled domain catches up at the end of the stall: its timers
	// first, in due order, then its deliveries.
	got = nil
	d := c.In("n")
	c.Stall("n", 100*time.Millisecond)
	c.afterFunc("n", true, 10*time.Millisecond, at("packet1"))
	d.AfterFunc(50*time.Millisecond, at("timer2"))
	d.AfterFunc(20*time.Millisecond, at("timer1"))
	c.afterFunc("n", true, 30*time.Millisecond, at("packet2"))
	c.AfterFunc(40*time.Millisecond, at("elsewhere"))
	c.RunFor(99 * time.Millisecond)
	if join(got) != "elsewhere" {
		t.Fatalf("during the stall: %q", join(got))
	}
	c.RunFor(2 * time.Millisecond)
	if want := "elsewhere timer1 timer2 packet1 packet2"; join(got) != want {
		t.Fatalf("after the stall %q, want %q", join(got), want)
	}
	ok := c.RunUntil(time.Second, 10*time.Millisecond, func() bool { return false })
	if ok || c.Now() != time.Unix(0, 0).Add(1111*time.Millisecond) {
		t.Fatalf("RunUntil: %v at %v", ok, c.Now())
	}
}

func join(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(x)
	}
	return b.String()
}

func TestKeyring(t *testing.T) {
	k1, k2 := []byte("key-one-0123456789abcdef"), []byte("key-two-0123456789abcdef")
	if _, err := NewKeyring([]byte("short")); !errors.Is(err, ErrKeyTooShort) {
		t.Fatalf("short key: %v", err)
	}
	a, _ := NewKeyring(k1)
	b, _ := NewKeyring(k2, k1) // primary k2, secondary k1
	ad := sealAD("c")
	msg := []byte("hello")
	env := a.seal(nil, msg, ad)
	if len(env) != len(msg)+envelopeOverhead {
		t.Fatalf("envelope of %d bytes", len(env))
	}
	if p, _, err := b.open(nil, env, ad); err != nil || !bytes.Equal(p, msg) {
		t.Fatalf("secondary key: %v", err)
	}
	if _, _, err := a.open(nil, b.seal(nil, msg, ad), ad); err == nil {
		t.Fatal("opened with a key it does not have")
	}
	if _, _, err := b.open(nil, env, sealAD("other")); err == nil {
		t.Fatal("opened with another cluster name")
	}
	if err := b.RemoveKey(k2); !errors.Is(err, ErrKeyPrimary) {
		t.Fatalf("remove primary: %v", err)
	}
	if err := b.UseKey([]byte("key-unknown-0123456789ab")); !errors.Is(err, ErrKeyUnknown) {
		t.Fatalf("use unknown: %v", err)
	}
	if err := b.UseKey(k1); err != nil {
		t.Fatal(err)
	}
	if err := b.RemoveKey(k2); err != nil || b.Len() != 1 {
		t.Fatalf("remove: %v, %d keys", err, b.Len())
	}
	if _, _, err := a.open(nil, b.seal(nil, msg, ad), ad); err != nil {
		t.Fatal("after rotation back to k1")
	}
	// Two envelopes of the same plaintext differ (fresh nonces).
	if bytes.Equal(a.seal(nil, msg, ad), a.seal(nil, msg, ad)) {
		t.Fatal("nonce reuse")
	}
	var f replayFilter
	n := make([]byte, nonceSize)
	if f.seen(n) || !f.seen(n) {
		t.Fatal("replay filter")
	}
	for i := 0; i < 3*replayGeneration; i++ {
		n[0], n[1], n[2] = byte(i), byte(i>>8), byte(i>>16)+1
		f.seen(n)
	}
	if len(f.cur) > replayGeneration || len(f.prev) > replayGeneration {
		t.Fatal("replay filter unbounded")
	}
}

func TestConfigRefused(t *testing.T) {
	tr := NewMemNetwork(NewVirtualClock(time.Unix(0, 0)), 1).Transport("x:1")
	for name, c := range map[string]Config{
		"no key":             {},
		"short key":          {ClusterKey: []byte("short")},
		"timeout > interval": {ClusterKey: testKey, ProbeInterval: time.Second, ProbeTimeout: 2 * time.Second},
		"tiny packets":       {ClusterKey: testKey, MaxPacketSize: 512},
		"long ID":            {ClusterKey: testKey, NodeID: string(make([]byte, MaxIDLen+1))},
		"big meta":           {ClusterKey: testKey, Meta: make([]byte, MaxMetaLen+1)},
	} {
		if _, err := New(c, tr); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
