package conn

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
)

// The server killed mid-call: every pending call returns a transport error
// within 1 s.
func TestServerKilledMidCall(t *testing.T) {
	ch := startChild(t)
	c := dialTest(t, newClientEngine(t), ch.addr, nil)
	block := codec.MethodID("block")
	const n = 50
	errs := make(chan error, n)
	var started sync.WaitGroup
	for range n {
		started.Add(1)
		go func() {
			started.Done()
			_, err := c.Call(context.Background(), block, []byte("wait"))
			errs <- err
		}()
	}
	started.Wait()
	eventually(t, "every call pending", func() bool { return c.InFlight() >= n })
	killed := time.Now()
	if err := ch.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range n {
		select {
		case err := <-errs:
			if !errors.Is(err, hawser.ErrTransport) || errors.Is(err, hawser.ErrRemote) {
				t.Fatalf("pending call returned %v, want a transport error", err)
			}
		case <-time.After(time.Second - time.Since(killed)):
			t.Fatal("a pending call did not fail within 1s of the kill")
		}
	}
	t.Logf("all %d pending calls failed %v after the kill", n, time.Since(killed))
	if _, err := c.Call(context.Background(), block, nil); !errors.Is(err, hawser.ErrTransport) {
		t.Fatalf("call after the kill: %v", err)
	}
}

// A peer that stops answering (SIGSTOP: the socket stays open) is detected
// by keepalive: pending calls fail with ErrKeepalive.
func TestKeepaliveDetectsFrozenPeer(t *testing.T) {
	ch := startChild(t)
	c := dialTest(t, newClientEngine(t), ch.addr, func(c *Config) {
		c.KeepaliveInterval = 100 * time.Millisecond
		c.KeepaliveTimeout = 100 * time.Millisecond
	})
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), codec.MethodID("block"), nil)
		done <- err
	}()
	eventually(t, "the call pending", func() bool { return c.InFlight() >= 1 })
	if err := ch.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ch.cmd.Process.Signal(syscall.SIGCONT) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrKeepalive) || !errors.Is(err, hawser.ErrTransport) {
			t.Fatalf("got %v, want a keepalive transport error", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("frozen peer not detected within 2s")
	}
}

// Inactivity timeout: an idle connection closes, on both sides.
func TestInactivityTimeoutClosesIdle(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModeInline))
	srv := startServer(t, r, func(c *Config) { c.InactivityTimeout = -1 })
	c := dialTest(t, newClientEngine(t), srv.addr(), func(c *Config) { c.InactivityTimeout = 200 * time.Millisecond })
	if _, err := c.Call(context.Background(), echo, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("idle connection not closed")
	}
	took := time.Since(start)
	if took < 190*time.Millisecond || took > 600*time.Millisecond {
		t.Fatalf("closed after %v, want 200-250ms", took)
	}
	if !errors.Is(c.Err(), ErrIdle) {
		t.Fatalf("closed with %v", c.Err())
	}
	sc := <-srv.accept
	select {
	case <-sc.Done():
	case <-time.After(time.Second):
		t.Fatal("server side did not close")
	}
	if _, err := c.Call(context.Background(), echo, nil); !errors.Is(err, hawser.ErrTransport) {
		t.Fatalf("call on a closed connection: %v", err)
	}

	// A server-side timeout closes an idle client connection the same way.
	srv2 := startServer(t, r, func(c *Config) { c.InactivityTimeout = 200 * time.Millisecond })
	c2 := dialTest(t, newClientEngine(t), srv2.addr(), func(c *Config) { c.InactivityTimeout = -1 })
	select {
	case <-c2.Done():
		if !errors.Is(c2.Err(), ErrIdle) {
			t.Fatalf("client saw %v", c2.Err())
		}
	case <-time.After(2 * time.Second):
		t.Fatal("server did not close the idle connection")
	}
}

// A busy connection is not idle: calls in flight keep it open.
func TestInactivityIgnoresBusy(t *testing.T) {
	r := newTestRouter()
	slow := r.handle("slow", &Route{Unary: func(ctx context.Context, _ *Request) ([]byte, error) {
		time.Sleep(400 * time.Millisecond)
		return []byte("done"), nil
	}})
	srv := startServer(t, r, func(c *Config) { c.InactivityTimeout = 100 * time.Millisecond })
	c := dialTest(t, newClientEngine(t), srv.addr(), func(c *Config) { c.InactivityTimeout = 100 * time.Millisecond })
	if resp, err := c.Call(context.Background(), slow, nil); err != nil || string(resp) != "done" {
		t.Fatalf("%q %v", resp, err)
	}
}

// GOAWAY: calls in flight finish; new calls fail with ErrGoAway (retryable
// elsewhere); the connection then closes.
func TestGracefulShutdown(t *testing.T) {
	r := newTestRouter()
	release := make(chan struct{})
	slow := r.handle("slow", &Route{Unary: func(ctx context.Context, _ *Request) ([]byte, error) {
		<-release
		return []byte("finished"), nil
	}})
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	results := make(chan error, 3)
	for range 3 {
		go func() {
			resp, err := c.Call(context.Background(), slow, nil)
			if err == nil && string(resp) != "finished" {
				err = errors.New("wrong reply")
			}
			results <- err
		}()
	}
	eventually(t, "3 calls pending", func() bool { return c.InFlight() >= 3 })
	sc := <-srv.accept
	eventually(t, "3 calls at the server", func() bool { return sc.InFlight() >= 3 })
	shut := make(chan error, 1)
	go func() { shut <- sc.Shutdown(context.Background()) }()
	eventually(t, "the client draining", c.Draining)
	if _, err := c.Call(context.Background(), slow, nil); !errors.Is(err, ErrGoAway) || !errors.Is(err, hawser.ErrTransport) {
		t.Fatalf("new call during drain: %v", err)
	}
	close(release)
	for range 3 {
		if err := <-results; err != nil {
			t.Fatalf("in-flight call: %v", err)
		}
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(time.Second):
		t.Fatal("client did not close after the drain")
	}
}
