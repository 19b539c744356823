package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/conn"
)

var (
	dedupEcho  = hawser.NewMethod[[]byte, []byte]("test.dedup.Echo")
	dedupSlow  = hawser.NewMethod[[]byte, []byte]("test.dedup.Slow")
	dedupFail  = hawser.NewMethod[[]byte, []byte]("test.dedup.Fail")
	dedupBig   = hawser.NewMethod[[]byte, []byte]("test.dedup.Big")
	dedupPanic = hawser.NewMethod[[]byte, []byte]("test.dedup.Panic")
	dedupFlow  = hawser.NewFlow[[]byte, []byte]("test.dedup.flow")
)

// dedupNode is a cluster-port server with the dedup test methods and a
// count of each handler's runs.
type dedupNode struct {
	s       *Server
	addr    string
	runs    sync.Map // method name -> *atomic.Int64
	entered chan struct{}
	release chan struct{}
	clock   *fakeClock
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (n *dedupNode) ran(name string) int64 {
	v, _ := n.runs.LoadOrStore(name, new(atomic.Int64))
	return v.(*atomic.Int64).Load()
}

func (n *dedupNode) hit(name string) int64 {
	v, _ := n.runs.LoadOrStore(name, new(atomic.Int64))
	return v.(*atomic.Int64).Add(1)
}

func startDedupNode(t *testing.T, cfg DedupConfig) *dedupNode {
	t.Helper()
	s, _ := newServer(t, func(c *Config) { c.Dedup = cfg })
	n := &dedupNode{s: s, entered: make(chan struct{}, 16), release: make(chan struct{}), clock: &fakeClock{t: time.Unix(1e9, 0)}}
	if s.dedup != nil {
		s.dedup.now = n.clock.now
	}
	// Each reply names the run that made it, so a repeat that ran again
	// would show.
	must(t, Handle(s, dedupEcho, func(_ context.Context, b []byte) ([]byte, error) {
		return fmt.Appendf(nil, "%s#%d", b, n.hit("echo")), nil
	}))
	must(t, Handle(s, dedupSlow, func(ctx context.Context, b []byte) ([]byte, error) {
		k := n.hit("slow")
		n.entered <- struct{}{}
		select {
		case <-n.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return fmt.Appendf(nil, "%s#%d", b, k), nil
	}))
	must(t, Handle(s, dedupFail, func(_ context.Context, b []byte) ([]byte, error) {
		return nil, fmt.Errorf("run %d: %w", n.hit("fail"), errMissing)
	}))
	must(t, Handle(s, dedupBig, func(_ context.Context, b []byte) ([]byte, error) {
		n.hit("big")
		return bytes.Repeat([]byte("x"), 100), nil
	}))
	must(t, Handle(s, dedupPanic, func(_ context.Context, b []byte) ([]byte, error) {
		n.hit("panic")
		panic("test.dedup.Panic")
	}))
	must(t, RegisterFlow(s, dedupFlow, func(_ context.Context, b []byte) ([]byte, error) {
		return fmt.Appendf(nil, "flow %s#%d", b, n.hit("flow")), nil
	}))
	n.addr = serve(t, s)
	return n
}

// Two calls with one request ID: the handler runs once and both get its
// reply; another ID, or none, runs again; the ID with another request is
// refused; a handler error is kept and re-created like the first.
func TestDedupRunsOnce(t *testing.T) {
	n := startDedupNode(t, DedupConfig{})
	c := dial(t, n.addr)
	ctx := context.Background()
	id, other := hawser.NewRequestID(), hawser.NewRequestID()
	call := func(m *hawser.Method[[]byte, []byte], req string, opts ...hawser.CallOption) (string, error) {
		out, err := m.Call(ctx, c, []byte(req), opts...)
		return string(out), err
	}
	for i, want := range []string{"a#1", "a#1"} {
		if got, err := call(dedupEcho, "a", hawser.WithRequestID(id)); err != nil || got != want {
			t.Fatalf("call %d: %q, %v; want %q", i, got, err, want)
		}
	}
	if got, err := call(dedupEcho, "a", hawser.WithRequestID(other)); err != nil || got != "a#2" {
		t.Fatalf("another ID: %q, %v", got, err)
	}
	if got, err := call(dedupEcho, "a"); err != nil || got != "a#3" {
		t.Fatalf("no ID: %q, %v", got, err)
	}
	if _, err := call(dedupEcho, "b", hawser.WithRequestID(id)); !errors.Is(err, hawser.ErrRequestIDReused) {
		t.Fatalf("the ID with another request: %v", err)
	}
	if got := n.ran("echo"); got != 3 {
		t.Fatalf("echo ran %d times, want 3", got)
	}
	// The same ID on another method is another call.
	var first error
	for i := range 2 {
		_, err := call(dedupFail, "a", hawser.WithRequestID(id))
		var re *hawser.RemoteError
		if !errors.Is(err, errMissing) || !errors.As(err, &re) || re.Code != codec.CodeNotFound {
			t.Fatalf("fail %d: %v", i, err)
		}
		if i == 0 {
			first = err
		} else if err.Error() != first.Error() {
			t.Fatalf("the repeat's error %q differs from the first's %q", err, first)
		}
	}
	if got := n.ran("fail"); got != 1 {
		t.Fatalf("fail ran %d times", got)
	}
	// From another connection too: the table is the server's.
	if out, err := dedupEcho.Call(ctx, dial(t, n.addr), []byte("a"), hawser.WithRequestID(id)); err != nil || string(out) != "a#1" {
		t.Fatalf("from another connection: %q, %v", out, err)
	}
	// Flows are deduplicated by their start.
	for range 2 {
		if out, err := dedupFlow.Start(ctx, c, []byte("f"), hawser.WithRequestID(id)); err != nil || string(out) != "flow f#1" {
			t.Fatalf("flow: %q, %v", out, err)
		}
	}
	if st := n.s.DedupStats(); st.Hits != 4 || st.Entries != 4 || st.Running != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// After the window the outcome is gone and the call runs again; so does
// the oldest outcome when MaxEntries is reached (counted as evicted).
func TestDedupExpiryAndEviction(t *testing.T) {
	n := startDedupNode(t, DedupConfig{Window: time.Minute, MaxEntries: 2})
	c := dial(t, n.addr)
	ctx := context.Background()
	call := func(id hawser.RequestID) string {
		t.Helper()
		out, err := dedupEcho.Call(ctx, c, []byte("e"), hawser.WithRequestID(id))
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	a, b, d := hawser.NewRequestID(), hawser.NewRequestID(), hawser.NewRequestID()
	if call(a) != "e#1" {
		t.Fatal("first run")
	}
	n.clock.advance(time.Minute - time.Millisecond)
	if got := call(a); got != "e#1" {
		t.Fatalf("within the window: %s", got)
	}
	n.clock.advance(time.Millisecond)
	if got := call(a); got != "e#2" {
		t.Fatalf("after the window: %s, want a second run", got)
	}
	if st := n.s.DedupStats(); st.Evicted != 0 || st.Entries != 1 {
		t.Fatalf("stats after expiry %+v", st)
	}
	call(b) // e#3
	call(d) // e#4: a's outcome (the oldest) is evicted
	if st := n.s.DedupStats(); st.Evicted != 1 || st.Entries != 2 {
		t.Fatalf("stats after eviction %+v", st)
	}
	if got := call(b); got != "e#3" {
		t.Fatalf("b after eviction of a: %s", got)
	}
	if got := call(a); got != "e#5" {
		t.Fatalf("a after its eviction: %s", got)
	}
}

// Repeats that arrive while the first attempt runs wait for it and get
// its reply; a repeat cancelled meanwhile stops waiting and leaves the
// others be.
func TestDedupConcurrentRepeats(t *testing.T) {
	n := startDedupNode(t, DedupConfig{})
	ctx := context.Background()
	id := hawser.NewRequestID()
	const repeats = 8
	type result struct {
		out string
		err error
	}
	results := make(chan result, repeats+1)
	first := dial(t, n.addr)
	go func() {
		out, err := dedupSlow.Call(ctx, first, []byte("s"), hawser.WithRequestID(id))
		results <- result{string(out), err}
	}()
	<-n.entered
	for i := range repeats {
		c := first
		if i%2 == 1 {
			c = dial(t, n.addr)
		}
		go func() {
			out, err := dedupSlow.Call(ctx, c, []byte("s"), hawser.WithRequestID(id))
			results <- result{string(out), err}
		}()
	}
	waitFor(t, func() bool { return n.s.DedupStats().Waiting == repeats })
	// One more repeat, cancelled while it waits: its caller gets
	// Canceled, and it stops waiting on the server.
	short, cancel := context.WithCancel(ctx)
	cancelled := make(chan error, 1)
	go func() {
		_, err := dedupSlow.Call(short, first, []byte("s"), hawser.WithRequestID(id))
		cancelled <- err
	}()
	waitFor(t, func() bool { return n.s.DedupStats().Waiting == repeats+1 })
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled repeat: %v", err)
	}
	waitFor(t, func() bool { return n.s.DedupStats().Waiting == repeats })
	close(n.release)
	for range repeats + 1 {
		r := <-results
		if r.err != nil || r.out != "s#1" {
			t.Fatalf("%q, %v", r.out, r.err)
		}
	}
	if got := n.ran("slow"); got != 1 {
		t.Fatalf("the handler ran %d times", got)
	}
	if st := n.s.DedupStats(); st.Waited != repeats || st.Waiting != 0 || st.Running != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A reply over MaxReplyBytes reaches its caller but is not kept: a repeat
// gets ErrOutcomeUnknown, never a second run. The same for a panic.
func TestDedupOutcomeNotKept(t *testing.T) {
	n := startDedupNode(t, DedupConfig{MaxReplyBytes: 64})
	c := dial(t, n.addr)
	ctx := context.Background()
	id := hawser.NewRequestID()
	if out, err := dedupBig.Call(ctx, c, nil, hawser.WithRequestID(id)); err != nil || len(out) != 100 {
		t.Fatalf("first: %d bytes, %v", len(out), err)
	}
	for range 2 {
		if _, err := dedupBig.Call(ctx, c, nil, hawser.WithRequestID(id)); !errors.Is(err, hawser.ErrOutcomeUnknown) {
			t.Fatalf("repeat: %v", err)
		}
	}
	if _, err := dedupPanic.Call(ctx, c, nil, hawser.WithRequestID(id)); err == nil {
		t.Fatal("a panicking handler answered")
	}
	if _, err := dedupPanic.Call(ctx, c, nil, hawser.WithRequestID(id)); !errors.Is(err, hawser.ErrOutcomeUnknown) {
		t.Fatalf("repeat after a panic: %v", err)
	}
	if n.ran("big") != 1 || n.ran("panic") != 1 {
		t.Fatalf("big ran %d, panic %d times", n.ran("big"), n.ran("panic"))
	}
	if st := n.s.DedupStats(); st.NotKept != 2 || st.Running != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// MaxBytes evicts the oldest outcomes to stay within it.
func TestDedupMaxBytes(t *testing.T) {
	n := startDedupNode(t, DedupConfig{MaxBytes: 3 * (entryOverhead + 8)})
	c := dial(t, n.addr)
	for i := range 10 {
		if _, err := dedupEcho.Call(context.Background(), c, []byte("m"), hawser.WithRequestID(hawser.NewRequestID())); err != nil {
			t.Fatal(err)
		}
		if st := n.s.DedupStats(); st.Bytes > 3*(entryOverhead+8) || st.Entries > 3 || st.Entries == 0 {
			t.Fatalf("after %d calls: %+v", i+1, st)
		}
	}
	if st := n.s.DedupStats(); st.Evicted != 7 {
		t.Fatalf("stats %+v", st)
	}
}

// A request ID that is not 16 bytes is refused before the handler; with
// deduplication off, calls with an ID run each time and the info method
// is not served; with it on, the info method answers the table's ID and
// window.
func TestDedupBadIDAndInfo(t *testing.T) {
	n := startDedupNode(t, DedupConfig{Window: 90 * time.Second})
	c := dial(t, n.addr)
	ctx := context.Background()
	md, _ := codec.AppendMetadata(nil, hawser.RequestIDKey, []byte("short"))
	if _, err := dedupEcho.Call(ctx, c, nil, hawser.WithMetadata(md)); !errors.Is(err, hawser.ErrBadRequestID) {
		t.Fatalf("an 5-byte ID: %v", err)
	}
	if n.ran("echo") != 0 {
		t.Fatal("the handler ran")
	}
	info, err := c.Call(ctx, codec.MethodID(hawser.DedupInfoMethod), nil)
	if err != nil || len(info) != 24 || !bytes.Equal(info[:16], n.s.dedup.id[:]) || binary.BigEndian.Uint64(info[16:]) != 90000 {
		t.Fatalf("info %x, %v", info, err)
	}

	off := startDedupNode(t, DedupConfig{Window: -1})
	oc := dial(t, off.addr)
	if oc.Serves(codec.MethodID(hawser.DedupInfoMethod)) {
		t.Fatal("the info method is served with deduplication off")
	}
	id := hawser.NewRequestID()
	for i := range 2 {
		if out, err := dedupEcho.Call(ctx, oc, []byte("o"), hawser.WithRequestID(id)); err != nil || string(out) != fmt.Sprintf("o#%d", i+1) {
			t.Fatalf("off, call %d: %q, %v", i, out, err)
		}
	}
}

// The table itself: an Inline route cannot wait, so a repeat that finds
// the first attempt running is refused with ErrRequestInProgress; the
// first one's outcome serves later repeats.
func TestDedupInlineRepeatRefused(t *testing.T) {
	tb := newDedupTable(DedupConfig{}, quiet())
	md, _ := codec.AppendMetadata(nil, hawser.RequestIDKey, make([]byte, 16))
	req := func() *conn.Request { return &conn.Request{Payload: []byte("p"), Metadata: md} }
	entered, release := make(chan struct{}), make(chan struct{})
	var runs atomic.Int32
	run := func(context.Context, *conn.Request) ([]byte, error) {
		runs.Add(1)
		close(entered)
		<-release
		return []byte("r"), nil
	}
	done := make(chan error, 1)
	go func() {
		out, err := tb.do(context.Background(), req(), 1, false, run)
		if err == nil && string(out) != "r" {
			err = fmt.Errorf("reply %q", out)
		}
		done <- err
	}()
	<-entered
	if _, err := tb.do(context.Background(), req(), 1, false, run); !errors.Is(err, hawser.ErrRequestInProgress) {
		t.Fatalf("repeat while running: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if out, err := tb.do(context.Background(), req(), 1, false, run); err != nil || string(out) != "r" || runs.Load() != 1 {
		t.Fatalf("repeat after: %q, %v, %d runs", out, err, runs.Load())
	}
}
