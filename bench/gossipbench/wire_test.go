package gossipbench

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// The relay forwards both ways, counts every byte once, passes a FIN on as
// a FIN (a graceful close stays graceful), and refuses dials once stopped.
func TestRelayCountsAndCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		// Echo until the FIN, then answer once more and close.
		_, err = io.Copy(c, c)
		if err == nil {
			_, err = c.Write([]byte("bye"))
		}
		served <- err
	}()

	var n, conns atomic.Int64
	r, err := newRelay(ln.Addr().String(), &n, &conns)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	c, err := net.Dial("tcp", r.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("x"), 1000)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %v", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(c) // the server saw the FIN, answered, closed
	if err != nil || string(rest) != "bye" {
		t.Fatalf("after the FIN: %q, %v", rest, err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	waitFor(t, "the pipe to end", func() bool { // both sides closed
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.open) == 0
	})
	if got, want := n.Load(), int64(2*len(msg)+3); got != want {
		t.Fatalf("counted %d bytes, want %d", got, want)
	}
	if conns.Load() != 1 {
		t.Fatalf("counted %d connections, want 1", conns.Load())
	}

	r.stop()
	if c, err := net.Dial("tcp", r.addr()); err == nil {
		_ = c.Close()
		t.Fatal("a stopped relay accepted a connection")
	}
}

// waitFor waits until cond holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
