package conn

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser/codec"
)

// inputHeld is what c holds for input between reads, measured on its loop:
// the capacities of its read buffer and of crypto/tls's receive buffers.
func inputHeld(t *testing.T, c *Conn) int {
	t.Helper()
	got := make(chan int, 1)
	c.onLoop(func() {
		n := 0
		if c.rbuf != nil {
			n += cap(*c.rbuf)
		}
		raw, input, hand := tlsBuffers(c.tc)
		got <- n + raw.Cap() + int(input.Size()) + hand.Cap()
	})
	select {
	case n := <-got:
		return n
	case <-time.After(5 * time.Second):
		t.Fatal("the connection's loop did not answer")
		return 0
	}
}

// onLoopWait runs f on c's loop and waits for it.
func onLoopWait(t *testing.T, c *Conn, f func()) {
	t.Helper()
	done := make(chan struct{})
	c.onLoop(func() { f(); close(done) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection's loop did not answer")
	}
}

// quickTicks makes a connection's timer tick every 250 ms (WriteStallTimeout/4).
func quickTicks(c *Config) { c.WriteStallTimeout = time.Second }

// An idle connection releases its read and TLS buffers, on both sides,
// after a large call and after a stream, and still works afterwards:
// calls large and small, and streams (issue 8).
func TestIdleReleasesBuffers(t *testing.T) {
	if !tlsInput.ok {
		t.Fatal("tls.Conn no longer has the fields rawInput, input and hand that conn/idle.go releases: idle connections keep their TLS buffers")
	}
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModePool))
	count := r.handle("count", countRoute(nil))
	srv := startServer(t, r, quickTicks)
	cl := dialTest(t, newClientEngine(t), srv.addr(), quickTicks)
	var sc *Conn
	select {
	case sc = <-srv.accept:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
	}
	ctx := context.Background()
	big := make([]byte, 256<<10)
	for i := range big {
		big[i] = byte(i)
	}
	grew := 0
	for round := range 3 {
		out, err := cl.Call(ctx, echo, big)
		if err != nil || string(out) != string(big) {
			t.Fatalf("round %d: large call: %d bytes, %v", round, len(out), err)
		}
		// crypto/tls keeps at least one full record after it (unless a tick
		// came first on a slow machine).
		if n := inputHeld(t, sc); n >= 16<<10 {
			grew++
		} else {
			t.Logf("round %d: the server held only %d bytes right after a large call", round, n)
		}
		eventually(t, "the server's connection to release its input buffers", func() bool { return inputHeld(t, sc) == 0 })
		eventually(t, "the dialer's connection to release its input buffers", func() bool { return inputHeld(t, cl) == 0 })

		if out, err := cl.Call(ctx, echo, []byte("small")); err != nil || string(out) != "small" {
			t.Fatalf("round %d: small call after the release: %q %v", round, out, err)
		}
		s, err := cl.OpenStream(ctx, count, countReq(200, 1000))
		if err != nil {
			t.Fatalf("round %d: stream after the release: %v", round, err)
		}
		if err := drain(s, 200, 1000); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		eventually(t, "the server's connection to release its buffers after the stream", func() bool { return inputHeld(t, sc) == 0 })
		eventually(t, "the dialer's connection to release its buffers after the stream", func() bool { return inputHeld(t, cl) == 0 })
	}
	if grew == 0 {
		t.Error("the server never held a full TLS record after a large call: the test measures nothing")
	}
	if cl.Err() != nil || sc.Err() != nil {
		t.Fatalf("closed: %v / %v", cl.Err(), sc.Err())
	}
}

// A lean connection stays lean through keepalive: the PINGs it receives
// leave no buffer behind, and a call afterwards ends lean mode and works.
func TestLeanThroughKeepalive(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModePool))
	srv := startServer(t, r, quickTicks)
	cl := dialTest(t, newClientEngine(t), srv.addr(), func(c *Config) {
		c.KeepaliveInterval = 20 * time.Millisecond // the dialer pings every 20 ms of silence
	})
	sc := <-srv.accept
	if _, err := cl.Call(context.Background(), echo, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the server's connection to go lean", func() bool { return sc.idle.lean.Load() && inputHeld(t, sc) == 0 })
	for range 5 {
		last := sc.lastRecv.Load()
		eventually(t, "a keepalive PING", func() bool { return sc.lastRecv.Load() != last })
		if n := inputHeld(t, sc); n != 0 || !sc.idle.lean.Load() {
			t.Fatalf("after a PING the lean connection holds %d bytes (lean %v)", n, sc.idle.lean.Load())
		}
	}
	if out, err := cl.Call(context.Background(), echo, []byte("x")); err != nil || string(out) != "x" {
		t.Fatalf("%q %v", out, err)
	}
	eventually(t, "lean mode to end with the call", func() bool { return !sc.idle.lean.Load() })
}

// splitConn holds back the second half of one write (a TLS record) until
// released, so that the peer has half a record buffered.
type splitConn struct {
	net.Conn
	armed   bool
	half    chan struct{} // closed when the first half is written
	release chan struct{}
}

func (s *splitConn) Write(p []byte) (int, error) {
	if !s.armed {
		return s.Conn.Write(p)
	}
	s.armed = false
	n, err := s.Conn.Write(p[:len(p)/2])
	close(s.half)
	if err != nil {
		return n, err
	}
	<-s.release
	m, err := s.Conn.Write(p[len(p)/2:])
	return n + m, err
}

// Nothing is released while a frame or a TLS record is partial, and the
// connection completes it afterwards.
func TestNoReleaseMidFrame(t *testing.T) {
	srv := startServer(t, newTestRouter(), nil)
	nc, err := net.Dial("tcp", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	split := &splitConn{Conn: nc, half: make(chan struct{}), release: make(chan struct{})}
	rw, err := DialRaw(context.Background(), split, clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-srv.accept
	ping := func(arg uint32) []byte {
		return codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindPing, Arg: arg}})
	}
	readPong := func(arg uint32) {
		t.Helper()
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []byte
		buf := make([]byte, 256)
		for {
			n, err := rw.Read(buf)
			if err != nil {
				t.Fatalf("waiting for PONG %d: %v", arg, err)
			}
			got = append(got, buf[:n]...)
			f, _, err := codec.Parse(got, codec.DefaultMaxFrameSize)
			if err == nil {
				if f.Kind != codec.KindPong || f.Arg != arg {
					t.Fatalf("got %v %d, want PONG %d", f.Kind, f.Arg, arg)
				}
				return
			}
		}
	}

	// Half a frame, in a whole record: the read buffer keeps it.
	p := ping(1)
	if _, err := rw.Write(p[:5]); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the half frame to arrive", func() bool {
		var held bool
		onLoopWait(t, sc, func() { held = sc.rbuf != nil && sc.rlen-sc.roff == 5 })
		return held
	})
	onLoopWait(t, sc, sc.releaseIdle)
	onLoopWait(t, sc, func() {
		if sc.rbuf == nil || sc.rlen-sc.roff != 5 || string((*sc.rbuf)[sc.roff:sc.rlen]) != string(p[:5]) || sc.idle.lean.Load() {
			t.Error("releaseIdle dropped a partial frame")
		} else if c := cap(*sc.rbuf); c > 1<<10 {
			t.Errorf("a quiet connection keeps a %d-byte read buffer for 5 bytes of a frame", c)
		}
	})
	if _, err := rw.Write(p[5:]); err != nil {
		t.Fatal(err)
	}
	readPong(1)

	// Half a TLS record: crypto/tls keeps it.
	split.armed = true
	wrote := make(chan error, 1)
	go func() { _, err := rw.Write(ping(2)); wrote <- err }()
	<-split.half
	eventually(t, "half a record to arrive", func() bool {
		var n int
		onLoopWait(t, sc, func() {
			raw, _, _ := tlsBuffers(sc.tc)
			n = raw.Len()
		})
		return n > 0
	})
	onLoopWait(t, sc, sc.releaseIdle)
	onLoopWait(t, sc, func() {
		if raw, _, _ := tlsBuffers(sc.tc); raw.Len() == 0 || sc.idle.lean.Load() {
			t.Error("releaseIdle dropped a partial TLS record")
		}
	})
	close(split.release)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	readPong(2)

	// Now it may release, and PINGs still work after.
	onLoopWait(t, sc, sc.releaseIdle)
	if n := inputHeld(t, sc); n != 0 {
		t.Fatalf("idle connection holds %d bytes after releaseIdle", n)
	}
	if _, err := rw.Write(ping(3)); err != nil {
		t.Fatal(err)
	}
	readPong(3)
}

// Connections share a TLS configuration that needs no change (ServerTLS,
// ClientTLS) instead of cloning it each; one that does is cloned and
// changed, never modified in place.
func TestTLSConfigSharedWhenUnchanged(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dialing bool
		cfg     *Config
	}{
		{"ServerTLS", false, serverConfig(t, newTestRouter())},
		{"ClientTLS", true, clientConfig()},
	} {
		rc, err := tc.cfg.resolved(tc.dialing)
		if err != nil {
			t.Fatal(err)
		}
		if rc.TLS != tc.cfg.TLS {
			t.Errorf("%s: the TLS configuration was cloned", tc.name)
		}
	}
	own := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10}
	rc, err := (&Config{TLS: own, ClusterKey: testKey}).resolved(true)
	if err != nil {
		t.Fatal(err)
	}
	if rc.TLS == own || own.MinVersion != tls.VersionTLS10 || own.DynamicRecordSizingDisabled {
		t.Error("a TLS configuration that needs changes was modified in place")
	}
	if rc.TLS.MinVersion != tls.VersionTLS12 || !rc.TLS.DynamicRecordSizingDisabled {
		t.Errorf("resolved TLS: MinVersion %#x, DynamicRecordSizingDisabled %v", rc.TLS.MinVersion, rc.TLS.DynamicRecordSizingDisabled)
	}
}
