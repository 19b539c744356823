package client_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/client"
	"github.com/hawser-rpc/hawser/internal/certgen"
	"github.com/hawser-rpc/hawser/server"
)

// u64 is a message with the encoding Binary interfaces.
type u64 struct{ V uint64 }

func (m *u64) AppendBinary(b []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint64(b, m.V), nil
}
func (m *u64) UnmarshalBinary(b []byte) error {
	if len(b) != 8 {
		return errors.New("u64: want 8 bytes")
	}
	m.V = binary.BigEndian.Uint64(b)
	return nil
}

var (
	kvGet    = hawser.NewMethod[*u64, *u64]("kv.Get")
	kvPut    = hawser.NewMethod[*u64, *u64]("kv.Put")
	kvWatch  = hawser.NewStream[*u64, *u64]("kv.Watch")
	transfer = hawser.NewFlow[*u64, *u64]("transfer")
	audit    = hawser.NewFlow[*u64, *u64]("audit")
	newer    = hawser.NewMethod[*u64, *u64]("kv.Newer", hawser.Since(4))
	kvPanic  = hawser.NewMethod[*u64, *u64]("kv.Panic")
)

// node is a client RPC server with the test methods and counters of the
// handlers that ran.
type node struct {
	srv  *server.Server
	addr string
	ran  sync.Map // name -> *atomic.Int64
	logs *syncBuffer
	cert *certgen.Pair
}

func (n *node) count(name string) int64 {
	v, _ := n.ran.LoadOrStore(name, new(atomic.Int64))
	return v.(*atomic.Int64).Load()
}

func (n *node) hit(name string) {
	v, _ := n.ran.LoadOrStore(name, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type nodeOpt func(*server.Config)

var (
	certOnce sync.Once
	certPair *certgen.Pair
)

func testCert(t testing.TB) *certgen.Pair {
	certOnce.Do(func() {
		var err error
		if certPair, err = certgen.SelfSigned("localhost", "127.0.0.1"); err != nil {
			panic(err)
		}
	})
	return certPair
}

// startNode serves the test methods on a client port over TLS, with the
// users of svc.
func startNode(t testing.TB, svc *auth.Service, opts ...nodeOpt) *node {
	t.Helper()
	return startNodeWith(t, svc, nil, opts...)
}

// startNodeWith is startNode with the further handlers that register adds.
func startNodeWith(t testing.TB, svc *auth.Service, register func(*server.Server), opts ...nodeOpt) *node {
	t.Helper()
	n := &node{logs: &syncBuffer{}, cert: testCert(t)}
	cfg := server.Config{
		BindAddr: "127.0.0.1", Port: -1, Auth: svc, PlatformVersion: 3,
		Certificate: &n.cert.Cert,
		Logger:      slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.srv = srv
	echo := func(name string) func(context.Context, *u64) (*u64, error) {
		return func(_ context.Context, r *u64) (*u64, error) {
			n.hit(name)
			return &u64{r.V + 1}, nil
		}
	}
	must(t, server.Handle(srv, kvGet, echo("kv.Get")))
	must(t, server.Handle(srv, kvPut, echo("kv.Put")))
	must(t, server.Handle(srv, newer, echo("kv.Newer")))
	must(t, server.Handle(srv, kvPanic, func(context.Context, *u64) (*u64, error) { panic("kv.Panic was called") }))
	must(t, server.HandleStream(srv, kvWatch, func(_ context.Context, r *u64, out hawser.Sender[*u64]) error {
		n.hit("kv.Watch")
		for i := range r.V {
			if err := out.Send(&u64{i}); err != nil {
				return err
			}
		}
		return nil
	}))
	must(t, server.RegisterFlow(srv, transfer, echo("transfer")))
	must(t, server.RegisterFlow(srv, audit, echo("audit")))
	if register != nil {
		register(srv)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	<-srv.Ready()
	if srv.Addr() == nil {
		t.Fatal(<-done)
	}
	n.addr = srv.Addr().String()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, server.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return n
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// service builds an auth.Service over users (plain passwords).
func service(t testing.TB, limit auth.LoginLimit, users ...auth.UserConfig) *auth.Service {
	t.Helper()
	src, err := auth.NewInMemory(auth.EncryptionNone, users)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := auth.New(auth.Config{Source: src, Limit: limit, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func (n *node) dial(t testing.TB, user, pass string, opts ...client.Option) *client.Conn {
	t.Helper()
	opts = append([]client.Option{client.WithPinnedCertificate(n.cert.CertPEM)}, opts...)
	c, err := client.Start(context.Background(), n.addr, user, pass, opts...)
	if err != nil {
		t.Fatalf("login as %s: %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// proxy forwards TCP connections to target, counts the bytes clients
// sent (up), and can cut every connection it carries.
type proxy struct {
	ln    net.Listener
	addr  string
	up    atomic.Int64
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, addr: ln.Addr().String()}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() {
				defer p.wg.Done()
				_, _ = io.Copy(countingWriter{s, &p.up}, c)
				_ = s.Close()
			}()
			go func() {
				defer p.wg.Done()
				_, _ = io.Copy(c, s)
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); p.cut(); p.wg.Wait() })
	return p
}

// cut closes every connection the proxy carries; it goes on accepting.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// countingWriter counts the bytes given to it before it forwards them,
// so that the count includes a request by the time its reply is back.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	return c.w.Write(b)
}
