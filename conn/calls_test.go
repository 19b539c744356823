package conn

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
)

// 10,000 calls from 64 goroutines over one connection all complete, each
// with its own reply, out of order; after Close no goroutine is left.
func TestManyCallsOutOfOrderNoLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	r := newTestRouter()
	m := r.handle("jitter", &Route{Unary: func(_ context.Context, req *Request) ([]byte, error) {
		// Later calls often finish first.
		time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
		return append(req.ReplyBuffer(len(req.Payload)+1), append(req.Payload, '!')...), nil
	}})
	srv := startServer(t, r, nil)
	eng, err := NewEngine(EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(context.Background(), eng, srv.addr(), clientConfig())
	if err != nil {
		t.Fatal(err)
	}

	const workers, perWorker = 64, 10000 / 64
	var sent, inversions atomic.Int64
	var lastDone atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker + boolInt(w < 10000%64) {
				seq := sent.Add(1)
				req := fmt.Appendf(nil, "w%d-i%d-", w, i)
				req = binary.BigEndian.AppendUint64(req, uint64(seq))
				resp, err := c.Call(context.Background(), m, req)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(resp, append(req, '!')) {
					errs <- fmt.Errorf("call %q got reply %q", req, resp)
					return
				}
				if prev := lastDone.Swap(seq); prev > seq {
					inversions.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := sent.Load(); got != 10000 {
		t.Fatalf("made %d calls", got)
	}
	if inversions.Load() == 0 {
		t.Fatal("every reply completed in send order: nothing was multiplexed")
	}
	t.Logf("10000 calls, %d completed after a later-sent call", inversions.Load())
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	srv.close()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A 50 ms deadline on a call to a handler that sleeps 1 s returns
// context.DeadlineExceeded in about 50 ms; the handler sees its context
// cancelled; the connection keeps serving.
func TestDeadlinePropagatesAndCancels(t *testing.T) {
	r := newTestRouter()
	handlerCtxErr := make(chan error, 1)
	gotDeadline := make(chan time.Duration, 1)
	slow := r.handle("slow", &Route{Unary: func(ctx context.Context, _ *Request) ([]byte, error) {
		d, ok := ctx.Deadline()
		if !ok {
			gotDeadline <- -1
		} else {
			gotDeadline <- time.Until(d)
		}
		select {
		case <-time.After(time.Second):
			handlerCtxErr <- nil
		case <-ctx.Done():
			handlerCtxErr <- ctx.Err()
		}
		return nil, ctx.Err()
	}})
	echo := r.handle("echo", echoRoute(ModePool))
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Call(ctx, slow, nil)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	if took < 45*time.Millisecond || took > 300*time.Millisecond {
		t.Fatalf("call returned after %v, want about 50ms", took)
	}
	if d := <-gotDeadline; d <= 0 || d > 50*time.Millisecond {
		t.Fatalf("handler deadline %v from now, want within 50ms", d)
	}
	select {
	case herr := <-handlerCtxErr:
		if herr == nil {
			t.Fatal("handler ran to completion: its context was not cancelled")
		}
	case <-time.After(500 * time.Millisecond):
		t.Fatal("handler context not cancelled within 500ms")
	}
	if resp, err := c.Call(context.Background(), echo, []byte("still up")); err != nil || string(resp) != "still up" {
		t.Fatalf("connection stopped serving: %q %v", resp, err)
	}
}

// Cancelling the caller's context sends CANCEL: the handler's context is
// cancelled and the connection stays up.
func TestCancelStopsHandler(t *testing.T) {
	r := newTestRouter()
	started := make(chan struct{})
	stopped := make(chan error, 1)
	block := r.handle("block", &Route{Unary: func(ctx context.Context, _ *Request) ([]byte, error) {
		close(started)
		<-ctx.Done()
		stopped <- ctx.Err()
		return nil, ctx.Err()
	}})
	echo := r.handle("echo", echoRoute(ModeInline))
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, block, nil)
		done <- err
	}()
	<-started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("call returned %v", err)
	}
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler saw %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("handler not cancelled")
	}
	if _, err := c.Call(context.Background(), echo, []byte("x")); err != nil {
		t.Fatal(err)
	}
}

var errNotFound = errors.New("kv: not found")

func init() {
	hawser.RegisterError("test.kv.NotFound", codec.CodeNotFound, errNotFound)
}

// A handler error and a registered sentinel round-trip; a panicking handler
// fails only its own call.
func TestRemoteErrorsAndPanics(t *testing.T) {
	r := newTestRouter()
	fail := r.handle("fail", &Route{Unary: func(_ context.Context, req *Request) ([]byte, error) {
		switch string(req.Payload) {
		case "sentinel":
			return nil, fmt.Errorf("looking up %q: %w", "k", errNotFound)
		case "plain":
			return nil, errors.New("plain failure")
		case "panic":
			panic("handler bug")
		}
		return []byte("ok"), nil
	}})
	for _, mode := range []Mode{ModePool, ModeInline, ModeOrdered} {
		r.routes[codec.MethodID(fmt.Sprint("fail", mode))] = &Route{Mode: mode, Unary: r.routes[fail].Unary}
	}
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	for _, mode := range []Mode{ModePool, ModeInline, ModeOrdered} {
		m := codec.MethodID(fmt.Sprint("fail", mode))
		_, err := c.Call(context.Background(), m, []byte("sentinel"))
		var re *hawser.RemoteError
		if !errors.Is(err, errNotFound) || !errors.Is(err, hawser.ErrRemote) || !errors.As(err, &re) {
			t.Fatalf("mode %d: sentinel lost: %v", mode, err)
		}
		if re.Code != codec.CodeNotFound || re.Name != "test.kv.NotFound" || re.Message != `looking up "k": kv: not found` {
			t.Fatalf("mode %d: %+v", mode, re)
		}
		if errors.Is(err, hawser.ErrTransport) {
			t.Fatal("remote error matches ErrTransport")
		}
		_, err = c.Call(context.Background(), m, []byte("plain"))
		if !errors.As(err, &re) || re.Code != codec.CodeUnknown || re.Message != "plain failure" || errors.Is(err, errNotFound) {
			t.Fatalf("mode %d: plain error: %v", mode, err)
		}
		var wg sync.WaitGroup
		results := make([]error, 20)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := "fine"
				if i%2 == 0 {
					p = "panic"
				}
				_, results[i] = c.Call(context.Background(), m, []byte(p))
			}()
		}
		wg.Wait()
		for i, err := range results {
			if i%2 == 0 {
				if !errors.As(err, &re) || re.Code != codec.CodeInternal {
					t.Fatalf("mode %d: panic gave %v", mode, err)
				}
			} else if err != nil {
				t.Fatalf("mode %d: a call next to a panic failed: %v", mode, err)
			}
		}
	}
}

func TestUnknownMethodFailsLocallyAndRemotely(t *testing.T) {
	r := newTestRouter()
	r.handle("echo", echoRoute(ModePool))
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	if _, err := c.Call(context.Background(), codec.MethodID("nope"), nil); !errors.Is(err, ErrUnknownMethod) {
		t.Fatalf("got %v", err)
	}
}
