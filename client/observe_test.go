package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/client"
	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/server"
)

// Tick is an observable's item that may carry a further observable.
type Tick struct {
	Seq  uint64
	Path string
	Sub  *hawser.Observable[Tick] `cbor:",omitempty"`
}

// Feeds is a reply that holds observables and a future.
type Feeds struct {
	A, B  *hawser.Observable[Tick]
	Count *hawser.Future[uint64] `cbor:",omitempty"`
}

// FeedsReq says how many items each observable emits, and which items
// carry a nested observable: Nested[path] = how many of its first items.
type FeedsReq struct {
	N      uint64
	Nested map[string]uint64
	Block  bool
	Pause  uint64 // forever: wait for resume after this many items
}

var (
	obsFeeds   = hawser.NewMethod[FeedsReq, Feeds]("obs.Feeds")
	obsForever = hawser.NewMethod[FeedsReq, Feeds]("obs.Forever")
	obsWatch   = hawser.NewStream[FeedsReq, Tick]("obs.Watch")
	obsFuture  = hawser.NewMethod[uint64, Feeds]("obs.Future")
)

// obsNode is a client port serving the observable test methods; its
// producers report their contexts' ends.
type obsNode struct {
	*node
	ended    chan string // producer path, when its ctx ended
	started  atomic.Int64
	finished atomic.Int64
	gate     chan struct{} // obs.Future's computation waits for it
	resume   chan struct{} // forever's producers wait for it after Pause items
	mu       sync.Mutex
	seen     map[string]int // ends taken from ended by waitEnded
}

func startObsNode(t testing.TB, opts ...nodeOpt) *obsNode {
	t.Helper()
	svc := service(t, auth.LoginLimit{}, auth.UserConfig{Username: "alice", Password: "pw", Permissions: []string{"ALL"}})
	on := &obsNode{ended: make(chan string, 1024), gate: make(chan struct{}), resume: make(chan struct{}), seen: map[string]int{}}
	on.node = startNodeWith(t, svc, func(srv *server.Server) {
		must(t, server.Handle(srv, obsFeeds, func(_ context.Context, r FeedsReq) (Feeds, error) {
			return Feeds{A: on.ticks(r, "A"), B: on.ticks(r, "B")}, nil
		}))
		must(t, server.Handle(srv, obsForever, func(_ context.Context, r FeedsReq) (Feeds, error) {
			return Feeds{A: on.forever("A", r), B: on.forever("B", r), Count: on.future(r.N)}, nil
		}, server.Inline()))
		must(t, server.HandleStream(srv, obsWatch, func(_ context.Context, r FeedsReq, out hawser.Sender[Tick]) error {
			for i := range r.N {
				tk := Tick{Seq: i, Path: "W"}
				if i < r.Nested["W"] {
					tk.Sub = on.ticks(r, fmt.Sprintf("W%d", i))
				}
				if err := out.Send(tk); err != nil {
					return err
				}
			}
			return nil
		}))
		must(t, server.Handle(srv, obsFuture, func(_ context.Context, v uint64) (Feeds, error) {
			return Feeds{Count: on.future(v)}, nil
		}))
	}, opts...)
	return on
}

func (on *obsNode) ticks(r FeedsReq, path string) *hawser.Observable[Tick] {
	var opts []hawser.ObservableOption
	if r.Block {
		opts = append(opts, hawser.WithOverflow(hawser.OverflowBlock))
	}
	return hawser.NewObservable(func(ctx context.Context, out hawser.Sender[Tick]) error {
		on.started.Add(1)
		defer on.finished.Add(1)
		for i := range r.N {
			tk := Tick{Seq: i, Path: path}
			if i < r.Nested[path] {
				tk.Sub = on.ticks(r, fmt.Sprintf("%s%d", path, i))
			}
			if err := out.Send(tk); err != nil {
				return err
			}
		}
		return nil
	}, opts...)
}

// forever emits items of r.N bytes until its context ends, then reports
// it.
func (on *obsNode) forever(path string, r FeedsReq) *hawser.Observable[Tick] {
	pad := string(make([]byte, r.N))
	var opts []hawser.ObservableOption
	if r.Block {
		opts = append(opts, hawser.WithOverflow(hawser.OverflowBlock))
	}
	return hawser.NewObservable(func(ctx context.Context, out hawser.Sender[Tick]) error {
		defer func() { on.ended <- path }()
		for i := uint64(0); ; i++ {
			if i == r.Pause && i > 0 {
				select {
				case <-on.resume:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if err := out.Send(Tick{Seq: i, Path: pad}); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}, opts...)
}

// future resolves to v once gate is closed, or reports its ctx's end.
func (on *obsNode) future(v uint64) *hawser.Future[uint64] {
	return hawser.NewFuture(func(ctx context.Context) (uint64, error) {
		select {
		case <-on.gate:
			return v * 2, nil
		case <-ctx.Done():
			on.ended <- "future"
			return 0, ctx.Err()
		}
	})
}

// consume reads o to its end on its own goroutine, checking the order,
// and consumes every nested observable the same way.
type consumer struct {
	t     *testing.T
	wg    sync.WaitGroup
	mu    sync.Mutex
	items map[string]uint64
}

func (c *consumer) consume(path string, o *hawser.Observable[Tick]) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer o.Close()
		var next uint64
		for tk, err := range o.All() {
			if err != nil {
				c.t.Errorf("%s: after %d items: %v", path, next, err)
				return
			}
			if tk.Seq != next || tk.Path != path {
				c.t.Errorf("%s: item %d is %s/%d", path, next, tk.Path, tk.Seq)
				return
			}
			next++
			if tk.Sub != nil {
				c.consume(fmt.Sprintf("%s%d", path, tk.Seq), tk.Sub)
			}
		}
		c.mu.Lock()
		c.items[path] = next
		c.mu.Unlock()
	}()
}

// TestNestedObservables: a reply holding two observables whose items hold
// further observables, to depth 3: ten observables of 10,000 items each,
// consumed concurrently, every one complete and in order.
func TestNestedObservables(t *testing.T) {
	for _, block := range []bool{false, true} {
		t.Run(fmt.Sprintf("block=%v", block), func(t *testing.T) {
			on := startObsNode(t)
			c := on.dial(t, "alice", "pw")
			const n = 10000
			req := FeedsReq{N: n, Nested: map[string]uint64{"A": 4, "B": 3, "B0": 1}, Block: block}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			f, err := obsFeeds.Call(ctx, c, req)
			if err != nil {
				t.Fatal(err)
			}
			cs := &consumer{t: t, items: map[string]uint64{}}
			cs.consume("A", f.A)
			cs.consume("B", f.B)
			cs.wg.Wait()
			want := []string{"A", "A0", "A1", "A2", "A3", "B", "B0", "B1", "B2", "B00"}
			if len(cs.items) != len(want) {
				t.Errorf("consumed %d observables, want %d: %v", len(cs.items), len(want), cs.items)
			}
			for _, p := range want {
				if cs.items[p] != n {
					t.Errorf("%s delivered %d items, want %d", p, cs.items[p], n)
				}
			}
			waitFor(t, "the server to free the subscriptions", func() bool {
				st := on.srv.Observables()
				return st.Subscriptions == 0 && st.Producers == 0 && st.Buffered == 0
			})
			if got := on.started.Load(); got != int64(len(want)) {
				t.Errorf("%d producers ran, want %d", got, len(want))
			}
		})
	}
}

// waitFor polls cond until it holds, failing after 20 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitEnded waits for the producer path to report its context's end
// (ends of other producers seen meanwhile are kept for later waits).
func (on *obsNode) waitEnded(t testing.TB, path string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		on.mu.Lock()
		if on.seen[path] > 0 {
			on.seen[path]--
			on.mu.Unlock()
			return
		}
		on.mu.Unlock()
		select {
		case p := <-on.ended:
			on.mu.Lock()
			on.seen[p]++
			on.mu.Unlock()
		case <-timeout:
			t.Fatalf("producer %s still running", path)
		}
	}
}

// TestStreamItemsHoldObservables: a server stream's items carry
// observables, each subscribed as its item is received.
func TestStreamItemsHoldObservables(t *testing.T) {
	on := startObsNode(t)
	c := on.dial(t, "alice", "pw")
	r, err := obsWatch.Open(context.Background(), c, FeedsReq{N: 100, Nested: map[string]uint64{"W": 5}})
	if err != nil {
		t.Fatal(err)
	}
	cs := &consumer{t: t, items: map[string]uint64{}}
	var got uint64
	for tk, err := range r.All() {
		if err != nil {
			t.Fatal(err)
		}
		if tk.Seq != got {
			t.Fatalf("item %d is %d", got, tk.Seq)
		}
		got++
		if tk.Sub != nil {
			cs.consume(fmt.Sprintf("W%d", tk.Seq), tk.Sub)
		}
	}
	cs.wg.Wait()
	if got != 100 || len(cs.items) != 5 {
		t.Fatalf("%d items, %d nested observables: %v", got, len(cs.items), cs.items)
	}
	for p, n := range cs.items {
		if n != 100 {
			t.Errorf("%s: %d items", p, n)
		}
	}
}

// TestSlowObservableDoesNotStallOthers: one observable nobody reads (its
// producer blocks on the stream's window) leaves the other free.
func TestSlowObservableDoesNotStallOthers(t *testing.T) {
	on := startObsNode(t)
	c := on.dial(t, "alice", "pw")
	f, err := obsFeeds.Call(context.Background(), c, FeedsReq{N: 200000, Block: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.A.Close()
	var n int
	for _, err := range f.B.All() {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 200000 {
		t.Fatalf("B delivered %d items", n)
	}
	// A is stalled on its window, not finished. (B's producer goroutine
	// may return just after its stream ended.)
	waitFor(t, "B's producer to return", func() bool { return on.srv.Observables().Producers == 1 })
	if st := on.srv.Observables(); st.Subscriptions != 1 || st.Claimed != 1 {
		t.Fatalf("after B ended: %+v, want A alone", st)
	}
}

// TestUnsubscribeStopsProducer: Close on an observable, or cancelling the
// context of the call that returned it, ends its producer's context.
func TestUnsubscribeStopsProducer(t *testing.T) {
	on := startObsNode(t)
	c := on.dial(t, "alice", "pw")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := obsForever.Call(ctx, c, FeedsReq{N: 16, Block: true})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := f.A.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.A.Close(); err != nil {
		t.Fatal(err)
	}
	on.waitEnded(t, "A")
	if _, err := f.A.Recv(); err == nil {
		t.Fatal("Recv after Close succeeded")
	}
	waitFor(t, "A's subscription to go (B and the future remain)", func() bool {
		return on.srv.Observables().Subscriptions == 2
	})

	if _, err := f.B.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	on.waitEnded(t, "B")
	on.waitEnded(t, "future")
	if _, err := f.B.Recv(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv after cancel: %v", err)
	}
	if _, err := f.Count.Get(context.Background()); err == nil {
		t.Fatal("the future resolved after its call's context was cancelled")
	}
	waitFor(t, "the server to free the subscriptions", func() bool {
		st := on.srv.Observables()
		return st.Subscriptions == 0 && st.Producers == 0 && st.Buffered == 0
	})
}

// TestFuture: a future resolves once; a cancelled one cancels its
// producer.
func TestFuture(t *testing.T) {
	on := startObsNode(t)
	c := on.dial(t, "alice", "pw")
	ctx := context.Background()

	f1, err := obsFuture.Call(ctx, c, 21)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := obsFuture.Call(ctx, c, 5)
	if err != nil {
		t.Fatal(err)
	}
	short, stop := context.WithTimeout(ctx, 20*time.Millisecond)
	if _, err := f1.Count.Get(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get before resolution: %v", err)
	}
	stop()
	f2.Count.Cancel()
	on.waitEnded(t, "future")
	if _, err := f2.Count.Get(ctx); !errors.Is(err, hawser.ErrCancelled) {
		t.Fatalf("Get after Cancel: %v", err)
	}
	close(on.gate)
	for range 2 {
		v, err := f1.Count.Get(ctx)
		if err != nil || v != 42 {
			t.Fatalf("Get = %d, %v; want 42", v, err)
		}
	}
	<-f1.Count.Ready()
	waitFor(t, "the server to free the futures", func() bool {
		st := on.srv.Observables()
		return st.Subscriptions == 0 && st.Producers == 0
	})
}

// TestLeakedObservable: an observable dropped without Close is
// unsubscribed when collected, with a warning naming its method and where
// it was received. The test forces collections until the warning shows;
// only the warning's timing depends on the collector.
func TestLeakedObservable(t *testing.T) {
	on := startObsNode(t)
	logs := &syncBuffer{}
	c := on.dial(t, "alice", "pw", client.TrackCallSites(),
		client.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	func() {
		f, err := obsForever.Call(context.Background(), c, FeedsReq{N: 1, Block: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.A.Recv(); err != nil {
			t.Fatal(err)
		}
		f.Count.Cancel()
		_ = f.B.Close()
	}()
	waitFor(t, "the leak warning", func() bool {
		runtime.GC()
		return strings.Contains(logs.String(), "garbage-collected without Close")
	})
	out := logs.String()
	for _, want := range []string{"method=obs.Forever", "kind=observable", "received_at=", "TestLeakedObservable"} {
		if !strings.Contains(out, want) {
			t.Errorf("warning lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "garbage-collected"); n != 1 {
		t.Errorf("%d warnings, want 1 (closed handles are not leaks):\n%s", n, out)
	}
	on.waitEnded(t, "A")
	waitFor(t, "the subscription count to return to 0", func() bool {
		return on.srv.Observables().Subscriptions == 0
	})
}

// TestKickSlowConsumer: a client that stops reading while its producer
// keeps emitting (OverflowKick) is disconnected once its buffer on the
// server is full, with ErrSlowConsumer; the server's memory for it stays
// within the bound, and another client's calls and streams keep running
// meanwhile.
func TestKickSlowConsumer(t *testing.T) {
	const budget = 1 << 20
	on := startObsNode(t, func(c *server.Config) { c.Observables.BufferBytes = budget })
	steady := on.dial(t, "alice", "pw")
	// The slow client's windows are small, so that what the server holds
	// for it is in its buffer rather than on the wire.
	slow := on.dial(t, "alice", "pw", client.WithConnConfig(func(c *conn.Config) { c.StreamWindow = 4 << 10 }))

	// The other client: calls and streams in a loop until the end.
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	var stopOnce sync.Once
	stopSteady := func() {
		stopOnce.Do(func() { close(stop) })
		wg.Wait()
	}
	t.Cleanup(stopSteady) // before the connections close
	go func() {
		defer wg.Done()
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r, err := kvGet.Call(context.Background(), steady, &u64{i})
			if err != nil || r.V != i+1 {
				failed.Add(1)
				t.Errorf("steady call %d: %v", i, err)
				return
			}
			st, err := kvWatch.Open(context.Background(), steady, &u64{3})
			if err != nil {
				failed.Add(1)
				t.Errorf("steady stream: %v", err)
				return
			}
			n := 0
			for _, err := range st.All() {
				if err != nil {
					failed.Add(1)
					t.Errorf("steady stream: %v", err)
					return
				}
				n++
			}
			if n != 3 {
				t.Errorf("steady stream: %d items", n)
			}
			ok.Add(1)
		}
	}()

	// The slow client's producers fill most of its buffer and pause: the
	// heap is measured then, in a steady state. Resumed, they overflow it.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	okBefore := ok.Load()
	const item = 1024
	f, err := obsForever.Call(context.Background(), slow, FeedsReq{N: item, Pause: budget * 3 / 8 / (item + 64)}) // never read
	if err != nil {
		t.Fatal(err)
	}
	// A and B pause after 3/8 of the buffer each, less what their
	// streams' windows took.
	waitFor(t, "the buffer to fill", func() bool { return on.srv.Observables().Buffered > budget*5/8 })
	runtime.GC()
	runtime.ReadMemStats(&ms)
	held := int64(ms.HeapAlloc) - int64(base)
	buffered := on.srv.Observables().Buffered
	r0 := ok.Load()
	waitFor(t, "steady rounds while the slow client stalls", func() bool { return ok.Load() >= r0+3 })
	close(on.resume)
	select {
	case <-slow.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the slow client was not disconnected")
	}
	if !errors.Is(slow.Err(), hawser.ErrSlowConsumer) {
		t.Fatalf("slow client closed with %v, want ErrSlowConsumer", slow.Err())
	}
	var got int
	for {
		_, err := f.A.Recv()
		if err != nil {
			if !errors.Is(err, hawser.ErrSlowConsumer) {
				t.Errorf("the slow client's observable ended with %v, want ErrSlowConsumer", err)
			}
			break
		}
		got++
	}
	_ = f.B.Close()
	f.Count.Cancel()
	on.waitEnded(t, "A")
	on.waitEnded(t, "B")
	waitFor(t, "the server to free the slow client's subscriptions", func() bool {
		st := on.srv.Observables()
		return st.Subscriptions == 0 && st.Producers == 0 && st.Buffered == 0
	})
	// The steady client is still served after the kick.
	waitFor(t, "a steady round after the kick", func() bool { return ok.Load() > okBefore+1 })
	stopSteady()
	st := on.srv.Observables()
	if st.Kicked != 1 {
		t.Errorf("kicked %d connections, want 1", st.Kicked)
	}
	if failed.Load() != 0 {
		t.Errorf("%d steady calls or streams failed", failed.Load())
	}
	if st.PeakBuffered > budget || st.PeakBuffered < budget*3/4 {
		t.Errorf("peak buffer %d bytes; its bound is %d, and it should have come near it", st.PeakBuffered, budget)
	}
	// Beyond the buffer, the heap holds each stream's window twice (in the
	// server's write queue and on the client: the test holds both ends),
	// the live goroutines and the test's own allocations.
	if held > budget+4*256<<10+2<<20 {
		t.Errorf("heap grew %d bytes while the server buffered %d for the slow client", held, buffered)
	}
	t.Logf("slow client: heap grew %d B while the server buffered %d B (bound %d); peak buffer %d B; %d items received before the kick; steady rounds %d",
		held, buffered, budget, st.PeakBuffered, got, ok.Load())
}

// TestHostileSubscribe: hawser.subscribe with a malformed request, an ID
// the connection does not hold, or an ID already taken fails with a typed
// error and leaves the connection serving.
func TestHostileSubscribe(t *testing.T) {
	on := startObsNode(t)
	c := on.dial(t, "alice", "pw")
	other := on.dial(t, "alice", "pw")
	ctx := context.Background()
	f, err := obsFuture.Call(ctx, c, 1) // exports ID 1 on c, which c has subscribed
	if err != nil {
		t.Fatal(err)
	}
	defer f.Count.Cancel()
	// The client's own subscription runs on its own goroutine on the
	// server: let it claim ID 1 before the test tries to take it again.
	waitFor(t, "the future's subscription", func() bool { return on.srv.Observables().Claimed == 1 })
	recvErr := func(req []byte, on *client.Conn) error {
		s, err := on.OpenStream(ctx, hawser.SubscribeID, req)
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.Recv()
		return err
	}
	for name, tc := range map[string]struct {
		req  []byte
		conn *client.Conn
		want error
	}{
		"taken":           {[]byte{1}, c, hawser.ErrUnknownSubscription},
		"unknown":         {[]byte{99}, c, hawser.ErrUnknownSubscription},
		"other conn's ID": {[]byte{1}, other, hawser.ErrUnknownSubscription},
		"huge ID":         {[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, c, hawser.ErrUnknownSubscription},
	} {
		if err := recvErr(tc.req, tc.conn); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	for name, req := range map[string][]byte{"empty": nil, "trailing": {1, 2}, "overlong": {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}} {
		var re *hawser.RemoteError
		if err := recvErr(req, c); !errors.As(err, &re) || re.Code != codec.CodeInvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if r, err := kvGet.Call(ctx, c, &u64{1}); err != nil || r.V != 2 {
		t.Fatalf("the connection after hostile subscriptions: %v", err)
	}
	close(on.gate)
	if v, err := f.Count.Get(ctx); err != nil || v != 2 {
		t.Fatalf("the future after hostile subscriptions: %d, %v", v, err)
	}
}

// TestCancelBeforeClaim: futures cancelled at once, before the server has
// run their subscriptions, are freed all the same.
func TestCancelBeforeClaim(t *testing.T) {
	on := startObsNode(t)
	c := on.dial(t, "alice", "pw")
	for i := range 50 {
		f, err := obsFuture.Call(context.Background(), c, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		f.Count.Cancel()
	}
	waitFor(t, "every cancelled future to be freed", func() bool {
		st := on.srv.Observables()
		return st.Subscriptions == 0 && st.Producers == 0
	})
}
