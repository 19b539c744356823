package conn

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
)

// A small urgent call is not queued behind bulk data on the same
// connection: urgent calls complete while a large transfer is still going.
func TestUrgentOvertakesBulk(t *testing.T) {
	r := newTestRouter()
	big := make([]byte, 8<<20)
	bulk := r.handle("bulk", &Route{Unary: func(context.Context, *Request) ([]byte, error) { return big, nil }})
	beat := r.handle("beat", echoRoute(ModeInline))
	srv := startServer(t, r, func(c *Config) { c.MaxMessageSize = 64 << 20 })
	c := dialTest(t, newClientEngine(t), srv.addr(), func(c *Config) { c.MaxMessageSize = 64 << 20 })

	var bulkDone atomic.Bool
	var wg sync.WaitGroup
	for range 4 { // 32 MiB of replies in flight
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Call(context.Background(), bulk, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	go func() { wg.Wait(); bulkDone.Store(true) }()
	var during int
	var worst time.Duration
	for !bulkDone.Load() {
		start := time.Now()
		if _, err := c.Call(context.Background(), beat, []byte("hb"), hawser.Urgent()); err != nil {
			t.Fatal(err)
		}
		if !bulkDone.Load() {
			during++
			worst = max(worst, time.Since(start))
		}
	}
	wg.Wait()
	t.Logf("%d urgent calls completed during 32 MiB of bulk replies; slowest %v", during, worst)
	if during < 3 {
		t.Fatalf("only %d urgent calls completed while bulk data flowed", during)
	}
}

// Pipelined calls to a ModeOrdered method run in send order and their
// replies complete in send order.
func TestPipelineInOrder(t *testing.T) {
	r := newTestRouter()
	var mu sync.Mutex
	var seen []uint64
	m := r.handle("append", &Route{Mode: ModeOrdered, Unary: func(_ context.Context, req *Request) ([]byte, error) {
		mu.Lock()
		seen = append(seen, binary.BigEndian.Uint64(req.Payload))
		mu.Unlock()
		return req.Payload, nil
	}})
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	const n = 500
	futures := make([]*Future, n)
	for i := range n {
		f, err := c.Go(context.Background(), m, binary.BigEndian.AppendUint64(nil, uint64(i)))
		if err != nil {
			t.Fatal(err)
		}
		futures[i] = f
	}
	// Replies complete in send order: when reply i is done, every earlier
	// one is too.
	for i, f := range futures {
		out, err := f.Wait()
		if err != nil || binary.BigEndian.Uint64(out) != uint64(i) {
			t.Fatalf("reply %d: %v", i, err)
		}
		for _, g := range futures[:i] {
			select {
			case <-g.Done():
			default:
				t.Fatalf("reply %d completed before an earlier one", i)
			}
		}
	}
	// Under mu: the replies order the handlers' appends before this only
	// through the socket, which the race detector does not see for raw
	// reads and writes.
	mu.Lock()
	defer mu.Unlock()
	for i, v := range seen {
		if v != uint64(i) {
			t.Fatalf("handler saw call %d at position %d", v, i)
		}
	}
}

// A handler that keeps its request bytes (Request.Keep) finds them intact
// after many later calls have reused the buffers, and what it keeps is the
// request's size, not its buffer class's (with Route.Keep or without).
func TestKeptPayloadNotRecycled(t *testing.T) {
	for _, tc := range []struct {
		mode Mode
		keep bool
	}{{ModePool, false}, {ModeInline, false}, {ModeOrdered, false}, {ModePool, true}, {ModeOrdered, true}} {
		mode := tc.mode
		r := newTestRouter()
		var mu sync.Mutex
		var kept [][]byte
		m := r.handle("keep", &Route{Mode: mode, Keep: tc.keep, Unary: func(_ context.Context, req *Request) ([]byte, error) {
			req.Keep()
			mu.Lock()
			kept = append(kept, req.Payload)
			mu.Unlock()
			return nil, nil
		}})
		srv := startServer(t, r, nil)
		c := dialTest(t, newClientEngine(t), srv.addr(), nil)
		for i := range 300 {
			if _, err := c.Call(context.Background(), m, bytes.Repeat([]byte{byte(i)}, 1000+i)); err != nil {
				t.Fatal(err)
			}
		}
		mu.Lock()
		for i, b := range kept {
			if !bytes.Equal(b, bytes.Repeat([]byte{byte(i)}, 1000+i)) {
				t.Fatalf("mode %d: kept payload %d was overwritten", mode, i)
			}
			if cap(b) != len(b) {
				t.Fatalf("mode %d, Route.Keep %v: kept %d bytes in a buffer of %d", mode, tc.keep, len(b), cap(b))
			}
		}
		mu.Unlock()
	}
}

// GoFunc's callback runs exactly once per call, after the call completed,
// whether it succeeded, was cancelled or its connection closed; a call
// that cannot start returns the error and never runs it.
func TestGoFuncCallbackOnce(t *testing.T) {
	r := newTestRouter()
	release := make(chan struct{})
	echo := r.handle("echo", &Route{Unary: func(_ context.Context, req *Request) ([]byte, error) { return req.Payload, nil }})
	block := r.handle("block", &Route{Unary: func(ctx context.Context, req *Request) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	}})
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	var mu sync.Mutex
	runs := map[*Future]int{}
	results := make(chan error, 100)
	then := func(f *Future) {
		mu.Lock()
		runs[f]++
		mu.Unlock()
		select {
		case <-f.Done():
		default:
			t.Error("callback before the future completed")
		}
		_, err := f.Wait()
		results <- err
	}
	const n = 50
	for i := range n {
		if _, err := c.GoFunc(context.Background(), echo, []byte{byte(i)}, then); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := c.GoFunc(ctx, block, nil, then); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-results; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	if _, err := c.GoFunc(context.Background(), block, nil, then); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if err := <-results; err == nil {
		t.Fatal("a call on a closed connection succeeded")
	}
	if _, err := c.GoFunc(context.Background(), echo, nil, then); err == nil {
		t.Fatal("GoFunc on a closed connection started")
	}
	close(release)
	mu.Lock()
	defer mu.Unlock()
	if len(runs) != n+2 {
		t.Fatalf("%d futures saw their callback, want %d", len(runs), n+2)
	}
	for _, k := range runs {
		if k != 1 {
			t.Fatalf("a callback ran %d times", k)
		}
	}
}
