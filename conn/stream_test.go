package conn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
)

// countRoute streams n items (n from the request), each the big-endian
// index followed by pad bytes.
func countRoute(maxOut *atomic.Int64) *Route {
	return &Route{Stream: func(ctx context.Context, req *Request, s *ServerStream) error {
		n := binary.BigEndian.Uint64(req.Payload)
		pad := int(binary.BigEndian.Uint32(req.Payload[8:]))
		item := make([]byte, 8+pad)
		for i := range n {
			binary.BigEndian.PutUint64(item, i)
			if err := s.Send(item); err != nil {
				return err
			}
			if maxOut != nil {
				if o := int64(s.Outstanding()); o > maxOut.Load() {
					maxOut.Store(o)
				}
			}
		}
		return nil
	}}
}

func countReq(n uint64, pad uint32) []byte {
	b := binary.BigEndian.AppendUint64(nil, n)
	return binary.BigEndian.AppendUint32(b, pad)
}

func drain(s hawser.RawStream, want uint64, pad int) error {
	for i := uint64(0); ; i++ {
		item, err := s.Recv()
		if errors.Is(err, io.EOF) {
			if i != want {
				return fmt.Errorf("stream ended after %d items, want %d", i, want)
			}
			return nil
		}
		if err != nil {
			return err
		}
		if len(item) != 8+pad || binary.BigEndian.Uint64(item) != i {
			return fmt.Errorf("item %d out of order or wrong: %d bytes, index %d", i, len(item), binary.BigEndian.Uint64(item))
		}
	}
}

// 10 streams of 100,000 items each on one connection arrive complete and in
// order.
func TestTenStreamsInOrder(t *testing.T) {
	r := newTestRouter()
	m := r.handle("count", countRoute(nil))
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	const streams, items = 10, 100_000
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	start := time.Now()
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := c.OpenStream(context.Background(), m, countReq(items, 8))
			if err != nil {
				errs <- err
				return
			}
			errs <- drain(s, items, 8)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d items in %v (%.0f items/s)", streams*items, time.Since(start), streams*items/time.Since(start).Seconds())
}

// A stream whose consumer stops reading does not slow the others, and what
// the server holds for it stays within its window.
func TestStalledConsumerIsolated(t *testing.T) {
	r := newTestRouter()
	var stalledOut atomic.Int64
	stalledM := r.handle("stalled", countRoute(&stalledOut))
	m := r.handle("count", countRoute(nil))
	srv := startServer(t, r, nil)
	const window = 64 << 10
	c := dialTest(t, newClientEngine(t), srv.addr(), func(c *Config) { c.StreamWindow = window })

	run := func() time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := c.OpenStream(context.Background(), m, countReq(20_000, 100))
				if err != nil {
					errs <- err
					return
				}
				errs <- drain(s, 20_000, 100)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		return time.Since(start)
	}
	baseline := run()

	// A consumer that reads nothing, on a stream that never ends by itself.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stalled, err := c.OpenStream(ctx, stalledM, countReq(1<<62, 100))
	if err != nil {
		t.Fatal(err)
	}
	// Let it fill its window.
	eventually(t, "the stalled stream to fill its window", func() bool { return stalledOut.Load() >= window/2 })
	withStall := run()
	t.Logf("4 streams x 20,000 items: %v alone, %v beside a stalled stream", baseline, withStall)
	if withStall > 5*baseline+200*time.Millisecond {
		t.Fatalf("a stalled stream slowed the others: %v vs %v", withStall, baseline)
	}
	if got := stalledOut.Load(); got > window {
		t.Fatalf("server had %d bytes outstanding for the stalled stream, window is %d", got, window)
	}
	buffered, uncredited := stalled.(*Stream).Buffered()
	if uncredited > window || buffered > 2*window {
		t.Fatalf("client holds %d bytes (%d uncredited) for the stalled stream, window %d", buffered, uncredited, window)
	}
	t.Logf("stalled stream: server outstanding max %d, client buffered %d, window %d", stalledOut.Load(), buffered, window)
	// Reading resumes the stalled stream.
	for i := range 5000 {
		item, err := stalled.Recv()
		if err != nil || binary.BigEndian.Uint64(item) != uint64(i) {
			t.Fatalf("resume: item %d: %v", i, err)
		}
	}
	cancel()
	if _, err := stalled.Recv(); !errors.Is(err, context.Canceled) {
		// Items already buffered may come first.
		for err == nil {
			_, err = stalled.Recv()
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("after cancel: %v", err)
		}
	}
}

// Items larger than the window are fragmented and flow-controlled.
func TestStreamLargeItems(t *testing.T) {
	r := newTestRouter()
	m := r.handle("count", countRoute(nil))
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), func(c *Config) { c.StreamWindow = 16 << 10 })
	s, err := c.OpenStream(context.Background(), m, countReq(20, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if err := drain(s, 20, 1<<20); err != nil {
		t.Fatal(err)
	}
}

// A handler error ends the stream with a remote error; Close cancels the
// handler.
func TestStreamErrorsAndClose(t *testing.T) {
	r := newTestRouter()
	cancelled := make(chan error, 1)
	m := r.handle("s", &Route{Stream: func(ctx context.Context, req *Request, s *ServerStream) error {
		if string(req.Payload) == "fail" {
			if err := s.Send([]byte("one")); err != nil {
				return err
			}
			return errNotFound
		}
		for {
			if err := s.Send([]byte("tick")); err != nil {
				cancelled <- err
				return err
			}
		}
	}})
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	s, err := c.OpenStream(context.Background(), m, []byte("fail"))
	if err != nil {
		t.Fatal(err)
	}
	if item, err := s.Recv(); err != nil || string(item) != "one" {
		t.Fatalf("%q %v", item, err)
	}
	if _, err := s.Recv(); !errors.Is(err, errNotFound) || !errors.Is(err, hawser.ErrRemote) {
		t.Fatalf("got %v", err)
	}
	s2, err := c.OpenStream(context.Background(), m, []byte("forever"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Recv(); err != nil {
		t.Fatal(err)
	}
	_ = s2.Close()
	select {
	case err := <-cancelled:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler Send returned %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("handler not cancelled after Close")
	}
	if _, err := s2.Recv(); err == nil {
		t.Fatal("Recv after Close succeeded")
	}
}
