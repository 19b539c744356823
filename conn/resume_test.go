package conn

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A redial resumes its TLS session (ServerTLS issues tickets, ClientTLS
// caches them), and resumption never stands in for the cluster key: each
// connection's proofs bind its own exporter, which differs from the
// resumed session's, a dialer with a wrong key holding a valid ticket is
// refused, and so is an acceptor with the server's ticket keys but a wrong
// key (a thief of the ticket keys, in the middle).
func TestSessionResumption(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModeInline))
	srvTLS := ServerTLS(testCert(t)) // one set of ticket keys for both servers
	good := startServer(t, r, func(c *Config) { c.TLS = srvTLS })
	impostor := startServer(t, r, func(c *Config) {
		c.TLS = srvTLS
		c.ClusterKey = []byte("another-cluster-key-entirely")
	})
	fwd := newForwarder(t, good.addr()) // one address, so one cache entry
	eng := newClientEngine(t)

	cfg := clientConfig()    // one TLS configuration: one session cache
	var resumed atomic.Int32 // -1 unknown, 0 full handshake, 1 resumed
	cfg.TLS.VerifyConnection = func(cs tls.ConnectionState) error {
		// Runs for resumed handshakes too.
		if cs.DidResume {
			resumed.Store(1)
		} else {
			resumed.Store(0)
		}
		return nil
	}
	dial := func(cfg *Config) (*Conn, error) {
		resumed.Store(-1)
		return Dial(context.Background(), eng, fwd.addr(), cfg)
	}
	binding := func(c *Conn) []byte {
		t.Helper()
		cs := c.tc.ConnectionState()
		b, err := cs.ExportKeyingMaterial(exporterLabel, nil, 32)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	accepted := func() *Conn {
		t.Helper()
		select {
		case c := <-good.accept:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("the server accepted nothing")
			return nil
		}
	}

	first, err := dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if resumed.Load() != 0 {
		t.Fatalf("first dial: resumed = %d, want a full handshake", resumed.Load())
	}
	if accepted().tc.ConnectionState().DidResume {
		t.Fatal("the acceptor resumed a first connection")
	}
	b1 := binding(first)
	_ = first.Close()

	// The ticket arrived during the first handshake (TLS 1.3 sends it
	// right after the server's Finished, before hawser's preface), so the
	// second dial offers it.
	second, err := dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if resumed.Load() != 1 {
		t.Fatalf("second dial: resumed = %d, want 1", resumed.Load())
	}
	if ac := accepted(); !ac.tc.ConnectionState().DidResume {
		t.Fatal("the acceptor did not resume the second connection")
	}
	if v := second.tc.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("TLS version %#x, want 1.3", v)
	}
	if b2 := binding(second); bytes.Equal(b1, b2) {
		t.Fatal("the resumed connection exports the same keying material as the first")
	}
	if resp, err := second.Call(context.Background(), echo, []byte("x")); err != nil || string(resp) != "x" {
		t.Fatalf("call on the resumed connection: %q, %v", resp, err)
	}

	// A dialer with the wrong key and a valid ticket: TLS resumes, the
	// proofs fail.
	bad := *cfg
	bad.ClusterKey = []byte("another-cluster-key-entirely")
	if c, err := dial(&bad); !errors.Is(err, ErrAuth) {
		if err == nil {
			_ = c.Close()
		}
		t.Fatalf("wrong-key dialer: %v, want ErrAuth", err)
	}
	if resumed.Load() != 1 {
		t.Fatalf("wrong-key dialer: resumed = %d, want 1 (the test must exercise resumption)", resumed.Load())
	}
	if good.waitErr(ErrAuth, 5*time.Second) == nil {
		t.Fatalf("the server recorded no ErrAuth: %v", good.errors())
	}

	// An acceptor with the ticket keys and the wrong key: TLS resumes,
	// the dialer refuses its proof.
	fwd.target.Store(impostor.addr())
	if c, err := dial(cfg); !errors.Is(err, ErrAuth) {
		if err == nil {
			_ = c.Close()
		}
		t.Fatalf("impostor acceptor: %v, want ErrAuth", err)
	}
	if resumed.Load() != 1 {
		t.Fatalf("impostor acceptor: resumed = %d, want 1", resumed.Load())
	}
}

// With rpc-tls-domain every peer has the same server name, by which
// crypto/tls keys its session cache; Dial keys it by address too, so
// dialing another peer does not evict the first one's session.
func TestSessionResumptionPerAddress(t *testing.T) {
	r := newTestRouter()
	r.handle("echo", echoRoute(ModeInline))
	a := startServer(t, r, nil) // each with its own ticket keys
	b := startServer(t, r, nil)
	roots := x509.NewCertPool()
	roots.AddCert(certPair.Leaf)
	cfg := &Config{TLS: ClientTLS("localhost", roots), ClusterKey: testKey, NodeID: "client"}
	eng := newClientEngine(t)
	dial := func(addr string) bool {
		t.Helper()
		c, err := Dial(context.Background(), eng, addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.tc.ConnectionState().DidResume
	}
	if dial(a.addr()) || dial(b.addr()) {
		t.Fatal("a first dial resumed")
	}
	if !dial(a.addr()) || !dial(b.addr()) {
		t.Fatal("a redial did not resume")
	}
}

// Without a session cache (a TLS configuration of the caller's own), every
// dial is a full handshake, and works.
func TestNoSessionCacheFullHandshakes(t *testing.T) {
	r := newTestRouter()
	r.handle("echo", echoRoute(ModeInline))
	srv := startServer(t, r, nil)
	eng := newClientEngine(t)
	cfg := clientConfig()
	cfg.TLS.ClientSessionCache = nil
	for range 2 {
		c, err := Dial(context.Background(), eng, srv.addr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if c.tc.ConnectionState().DidResume {
			t.Fatal("resumed without a session cache")
		}
		_ = c.Close()
	}
}

// forwarder relays TCP connections to target (which may change): one
// address in front of several servers.
type forwarder struct {
	ln     net.Listener
	target atomic.Value // string
	wg     sync.WaitGroup
}

func newForwarder(t *testing.T, target string) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln}
	f.target.Store(target)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go f.pipe(c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		f.wg.Wait()
	})
	return f
}

func (f *forwarder) addr() string { return f.ln.Addr().String() }

func (f *forwarder) pipe(c net.Conn) {
	defer f.wg.Done()
	defer c.Close()
	b, err := net.Dial("tcp", f.target.Load().(string))
	if err != nil {
		return
	}
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(b, c)
		_ = b.Close()
	}()
	_, _ = io.Copy(c, b)
	_ = c.Close()
	<-done
}
