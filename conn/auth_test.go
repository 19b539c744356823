package conn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/internal/certgen"
)

// A wrong cluster key on either side: the connection is refused before any
// handler runs, and the dialer gets a typed authentication error.
func TestWrongClusterKeyRefused(t *testing.T) {
	for _, side := range []string{"dialer", "acceptor"} {
		t.Run(side, func(t *testing.T) {
			r := newTestRouter()
			var ran atomic.Int32
			m := r.handle("touch", &Route{Unary: func(context.Context, *Request) ([]byte, error) {
				ran.Add(1)
				return nil, nil
			}})
			srv := startServer(t, r, func(c *Config) {
				if side == "acceptor" {
					c.ClusterKey = []byte("another-cluster-key-entirely")
				}
			})
			cfg := clientConfig()
			if side == "dialer" {
				cfg.ClusterKey = []byte("another-cluster-key-entirely")
			}
			c, err := Dial(context.Background(), newClientEngine(t), srv.addr(), cfg)
			if err == nil {
				_, _ = c.Call(context.Background(), m, nil)
				_ = c.Close()
				t.Fatal("dial succeeded with a wrong cluster key")
			}
			if !errors.Is(err, ErrAuth) || !errors.Is(err, hawser.ErrTransport) {
				t.Fatalf("got %v, want ErrAuth", err)
			}
			if srv.waitErr(ErrAuth, time.Second) == nil {
				t.Fatalf("server recorded no ErrAuth: %v", srv.errors())
			}
			if ran.Load() != 0 {
				t.Fatal("a handler ran on an unauthenticated connection")
			}
		})
	}
}

// A dialer whose proof is right but who talks to an acceptor with another
// key cannot be fooled: the acceptor's proof fails on the dialer's side too.
func TestAcceptorProofChecked(t *testing.T) {
	// A fake acceptor that accepts any HELLO and answers with a proof made
	// from a different key.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fake := &Config{TLS: ServerTLS(testCert(t)), ClusterKey: []byte("an-impostor-without-the-key"), Router: newTestRouter()}
	rc, err := fake.resolved(false)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		h := newHandshake(rc, nc)
		h.tc = tls.Server(h.tr, rc.TLS)
		h.rw = h.tc
		if h.tc.Handshake() != nil {
			return
		}
		h.self, _ = newPreface(rc.versions)
		_, _ = h.rw.Write(codec.AppendPreface(nil, h.self))
		if h.readPreface() != nil {
			return
		}
		f, err := h.readHandshakeFrame()
		if err != nil {
			return
		}
		hello, _ := codec.ParseHello(f.Body)
		b, _ := h.binding()
		ack := codec.Hello{Version: 1, Proof: proof(rc.authKey, acceptLabel, b, hello.Proof[:], "")}
		out, _ := appendHelloFrame(nil, codec.KindHelloAck, &ack)
		_, _ = h.rw.Write(out)
		time.Sleep(100 * time.Millisecond)
	}()
	_, err = Dial(context.Background(), newClientEngine(t), ln.Addr().String(), clientConfig())
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
	<-done
}

// A TCP client that connects and sends nothing is closed within rpc-timeout.
func TestSilentClientClosedAtTimeout(t *testing.T) {
	r := newTestRouter()
	srv := startServer(t, r, func(c *Config) { c.Timeout = 200 * time.Millisecond })
	nc, err := net.Dial("tcp", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
	_ = nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	for {
		if _, err = nc.Read(buf); err != nil {
			break
		}
	}
	took := time.Since(start)
	if isTimeout(err) {
		t.Fatal("server did not close a silent connection within 3s")
	}
	if took < 150*time.Millisecond || took > 700*time.Millisecond {
		t.Fatalf("closed after %v, want about rpc-timeout (200ms)", took)
	}
	if srv.waitErr(context.DeadlineExceeded, time.Second) == nil {
		t.Fatalf("server recorded no timeout: %v", srv.errors())
	}
}

// The whole dial (connect + TLS + auth) is bounded by rpc-timeout: a peer
// that accepts TCP and then stays silent fails the dial at that bound.
func TestDialBoundedByTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			defer nc.Close()
		}
	}()
	cfg := clientConfig()
	cfg.Timeout = 150 * time.Millisecond
	start := time.Now()
	_, err = Dial(context.Background(), newClientEngine(t), ln.Addr().String(), cfg)
	took := time.Since(start)
	var te *hawser.TransportError
	if !errors.As(err, &te) || !te.Timeout() {
		t.Fatalf("got %v, want a timeout transport error", err)
	}
	if took > 500*time.Millisecond {
		t.Fatalf("dial took %v with a 150ms rpc-timeout", took)
	}
}

// rpc-tls-domain set and a certificate for another name: the dial fails with
// a TLS verification error. Unset: self-signed peers connect.
func TestTLSDomainVerification(t *testing.T) {
	ca, err := certgen.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("node-a.cluster.internal")
	if err != nil {
		t.Fatal(err)
	}
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModeInline))
	srv := startServer(t, r, func(c *Config) { c.TLS = ServerTLS(leaf.Cert) })
	eng := newClientEngine(t)

	// The right name verifies.
	ok := dialTest(t, eng, srv.addr(), func(c *Config) { c.TLS = ClientTLS("node-a.cluster.internal", ca.Pool()) })
	if _, err := ok.Call(context.Background(), echo, nil); err != nil {
		t.Fatal(err)
	}
	// Another name fails verification.
	cfg := clientConfig()
	cfg.TLS = ClientTLS("node-b.cluster.internal", ca.Pool())
	_, err = Dial(context.Background(), eng, srv.addr(), cfg)
	var cve *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	if !errors.As(err, &cve) || !errors.As(err, &hostErr) {
		t.Fatalf("got %v, want a certificate verification (hostname) error", err)
	}
	// Unset domain: a self-signed certificate is accepted (the cluster key
	// authenticates).
	self := startServer(t, r, nil)
	c := dialTest(t, eng, self.addr(), nil)
	if _, err := c.Call(context.Background(), echo, nil); err != nil {
		t.Fatal(err)
	}
	// A domain with a self-signed certificate not in the roots fails too.
	cfg.TLS = ClientTLS("localhost", ca.Pool())
	if _, err := Dial(context.Background(), eng, self.addr(), cfg); !errors.As(err, &cve) {
		t.Fatalf("got %v, want a verification error", err)
	}
}

// TLS 1.3 by default; 1.2 works as the minimum and still authenticates
// (exporter keying material needs extended master secret, which Go sends).
func TestTLSVersions(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModeInline))
	srv := startServer(t, r, nil)
	eng := newClientEngine(t)
	c := dialTest(t, eng, srv.addr(), nil)
	if v := c.tc.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("default version %x, want TLS 1.3", v)
	}
	c12 := dialTest(t, eng, srv.addr(), func(c *Config) { c.TLS.MaxVersion = tls.VersionTLS12 })
	if v := c12.tc.ConnectionState().Version; v != tls.VersionTLS12 {
		t.Fatalf("version %x, want TLS 1.2", v)
	}
	if _, err := c12.Call(context.Background(), echo, []byte("1.2")); err != nil {
		t.Fatal(err)
	}
	// Below 1.2 is raised to 1.2.
	c11 := dialTest(t, eng, srv.addr(), func(c *Config) { c.TLS.MinVersion = tls.VersionTLS10 })
	if v := c11.tc.ConnectionState().Version; v < tls.VersionTLS12 {
		t.Fatalf("negotiated %x below TLS 1.2", v)
	}
}

// Plaintext needs an option that says it is insecure; it still authenticates.
func TestInsecurePlaintext(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModeInline))
	srv := startServer(t, r, func(c *Config) { c.TLS = nil; c.InsecurePlaintext = true })
	c := dialTest(t, newClientEngine(t), srv.addr(), func(c *Config) { c.TLS = nil; c.InsecurePlaintext = true })
	if resp, err := c.Call(context.Background(), echo, []byte("clear")); err != nil || string(resp) != "clear" {
		t.Fatalf("%q %v", resp, err)
	}
	cfg := clientConfig()
	cfg.TLS, cfg.InsecurePlaintext = nil, true
	cfg.ClusterKey = []byte("wrong-key-wrong-key-wrong")
	if _, err := Dial(context.Background(), newClientEngine(t), srv.addr(), cfg); !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
	if _, err := Dial(context.Background(), newClientEngine(t), srv.addr(), &Config{ClusterKey: testKey}); !errors.Is(err, ErrConfig) {
		t.Fatalf("no TLS and no InsecurePlaintext: got %v", err)
	}
}

// A peer with no common protocol version gets a clear error at once, not a
// timeout, on both sides.
func TestVersionMismatch(t *testing.T) {
	r := newTestRouter()
	srv := startServer(t, r, nil)
	cfg := clientConfig()
	cfg.versions = [2]uint16{5, 7} // a future dialer that speaks only 5..7
	start := time.Now()
	_, err := Dial(context.Background(), newClientEngine(t), srv.addr(), cfg)
	if !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("got %v, want ErrVersionMismatch", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("took %v: a mismatch must not wait for a timeout", took)
	}
	t.Logf("dialer error: %v", err)
	if srv.waitErr(ErrVersionMismatch, time.Second) == nil {
		t.Fatalf("acceptor recorded %v", srv.errors())
	}
}
