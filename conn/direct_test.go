package conn

import (
	"bytes"
	"context"
	"testing"
)

// A lone caller's CALL and the handler's REPLY are written by the
// goroutines that queued them, not by waking the loop; with LoopWrites
// every write goes through the loop, and the calls work the same.
func TestLoneCallsWriteDirect(t *testing.T) {
	for _, loop := range []bool{false, true} {
		r := newTestRouter()
		m := r.handle("echo", echoRoute(ModePool))
		mod := func(c *Config) { c.LoopWrites = loop }
		srv := startServer(t, r, mod)
		c := dialTest(t, newClientEngine(t), srv.addr(), mod)
		const calls = 50
		for i := range calls {
			req := pattern(100 + i)
			resp, err := c.Call(context.Background(), m, req)
			if err != nil || !bytes.Equal(resp, req) {
				t.Fatalf("call %d: %v (%d bytes back)", i, err, len(resp))
			}
		}
		sc := <-srv.accept
		cw, sw := c.directWrites.Load(), sc.directWrites.Load()
		if loop {
			if cw != 0 || sw != 0 {
				t.Fatalf("LoopWrites: %d direct writes by the dialer, %d by the acceptor", cw, sw)
			}
			continue
		}
		// Each side writes almost every frame itself; a frame queued while
		// the previous writer (descheduled after its writev) still holds
		// the queue is left to it or to the loop.
		if cw < calls/2 || sw < calls/2 {
			t.Fatalf("%d calls one at a time: %d direct writes by the dialer, %d by the acceptor; want each >= %d", calls, cw, sw, calls/2)
		}
	}
}

// With many calls in flight the loop batches: callers queue and a flush
// writes many frames at once, instead of each caller making a syscall.
func TestConcurrentCallsBatchOnLoop(t *testing.T) {
	r := newTestRouter()
	m := r.handle("echo", echoRoute(ModePool))
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	const callers, each = 32, 100
	echoConcurrently(t, c, m, pattern(64), callers, each)
	if n := c.directWrites.Load(); n > callers*each/4 {
		t.Fatalf("%d callers made %d direct writes for %d calls; want most batched by the loop", callers, n, callers*each)
	}
}

// A direct write the socket cannot take whole leaves the rest to the loop,
// which writes it before anything queued later: a large message from a lone
// caller arrives intact while the acceptor's loop is stalled, and a second
// call behind it works.
func TestDirectWriteLeftoverGoesToLoop(t *testing.T) {
	r := newTestRouter()
	stall, release := make(chan struct{}), make(chan struct{})
	block := r.handle("block", &Route{Mode: ModeInline, Unary: func(context.Context, *Request) ([]byte, error) {
		close(stall)
		<-release // holds the acceptor's only loop: it reads nothing meanwhile
		return nil, nil
	}})
	echo := r.handle("echo", echoRoute(ModePool))
	srv := startServerOn(t, r, nil, EngineConfig{Loops: 1})
	eng := newClientEngine(t)
	a := dialTest(t, eng, srv.addr(), nil)
	b := dialTest(t, eng, srv.addr(), nil)

	blocked := make(chan error, 1)
	go func() {
		_, err := a.Call(context.Background(), block, nil)
		blocked <- err
	}()
	<-stall
	big := pattern(8 << 20)
	done := make(chan error, 1)
	var resp []byte
	go func() {
		var err error
		resp, err = b.Call(context.Background(), echo, big)
		done <- err
	}()
	eventually(t, "a direct write the socket did not take whole", func() bool { return b.directLeft.Load() > 0 })
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp, big) {
		t.Fatalf("echo of %d bytes came back as %d bytes, not equal", len(big), len(resp))
	}
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	small := pattern(1000)
	if got, err := b.Call(context.Background(), echo, small); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("call after: %v", err)
	}
}
