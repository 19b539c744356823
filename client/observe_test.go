package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/client"
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
}

func startObsNode(t testing.TB, opts ...nodeOpt) *obsNode {
	t.Helper()
	svc := service(t, auth.LoginLimit{}, auth.UserConfig{Username: "alice", Password: "pw", Permissions: []string{"ALL"}})
	on := &obsNode{ended: make(chan string, 1024), gate: make(chan struct{})}
	on.node = startNodeWith(t, svc, func(srv *server.Server) {
		must(t, server.Handle(srv, obsFeeds, func(_ context.Context, r FeedsReq) (Feeds, error) {
			return Feeds{A: on.ticks(r, "A"), B: on.ticks(r, "B")}, nil
		}))
		must(t, server.Handle(srv, obsForever, func(_ context.Context, r FeedsReq) (Feeds, error) {
			return Feeds{A: on.forever("A", r.N), B: on.forever("B", r.N), Count: on.future(r.N)}, nil
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

// forever emits until its context ends, then reports it.
func (on *obsNode) forever(path string, size uint64) *hawser.Observable[Tick] {
	pad := string(make([]byte, size))
	return hawser.NewObservable(func(ctx context.Context, out hawser.Sender[Tick]) error {
		defer func() { on.ended <- path }()
		for i := uint64(0); ; i++ {
			if err := out.Send(Tick{Seq: i, Path: pad}); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	})
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

var _ = errors.Is
var _ = io.EOF
var _ = slog.Default
var _ = client.Start
