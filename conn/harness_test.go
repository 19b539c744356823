package conn

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/internal/certgen"
	"github.com/hawser-rpc/hawser/internal/workers"
)

var testKey = []byte("0123456789abcdef-cluster-key")

// testRouter serves a fixed set of routes; Submit runs tasks on the
// server's bounded worker pool.
type testRouter struct {
	routes map[uint64]*Route
	pool   *workers.Pool
	users  atomic.Int32    // servers using it; the last to close closes the pool
	submit func(Task) bool // if set, replaces Submit (set before serving)
}

func newTestRouter() *testRouter {
	return &testRouter{routes: map[uint64]*Route{}, pool: workers.New(workers.Config{})}
}

func (r *testRouter) handle(name string, rt *Route) uint64 {
	id := codec.MethodID(name)
	r.routes[id] = rt
	return id
}

func (r *testRouter) Route(m uint64) *Route { return r.routes[m] }

func (r *testRouter) Methods() []uint64 {
	out := make([]uint64, 0, len(r.routes))
	for id := range r.routes {
		out = append(out, id)
	}
	return out
}

func (r *testRouter) Submit(t Task) bool {
	if r.submit != nil {
		return r.submit(t)
	}
	return r.pool.Submit(t)
}

func (r *testRouter) Go(f func()) { go f() }

// newSmallPool is a worker pool of n goroutines with a short queue.
func newSmallPool(n int) *workers.Pool { return workers.New(workers.Config{Max: n, Queue: n}) }

var (
	certOnce sync.Once
	certPair *certgen.Pair
)

func testCert(t testing.TB) tls.Certificate {
	certOnce.Do(func() {
		var err error
		certPair, err = certgen.SelfSigned("localhost", "127.0.0.1")
		if err != nil {
			panic(err)
		}
	})
	return certPair.Cert
}

// testServer accepts hawser connections on loopback.
type testServer struct {
	t      testing.TB
	ln     net.Listener
	eng    *Engine
	cfg    *Config
	router *testRouter
	wg     sync.WaitGroup

	closeOnce sync.Once

	mu     sync.Mutex
	conns  []*Conn
	errs   []error
	accept chan *Conn
}

func serverConfig(t testing.TB, r *testRouter) *Config {
	return &Config{
		TLS:        ServerTLS(testCert(t)),
		ClusterKey: testKey,
		NodeID:     "server",
		Router:     r,
	}
}

func clientConfig() *Config {
	return &Config{TLS: ClientTLS("", nil), ClusterKey: testKey, NodeID: "client", DialRead: testDialRead}
}

// testDialRead is how the tests' dialed connections are read:
// HAWSER_TEST_DIALREAD=loop or poller (make test runs the package both
// ways), else the default.
var testDialRead = func() DialRead {
	switch os.Getenv("HAWSER_TEST_DIALREAD") {
	case "loop":
		return DialReadLoop
	case "poller":
		return DialReadPoller
	}
	return DialReadAuto
}()

func startServer(t testing.TB, r *testRouter, mod func(*Config)) *testServer {
	t.Helper()
	return startServerOn(t, r, mod, EngineConfig{})
}

// startServerOn is startServer with the server engine's configuration.
func startServerOn(t testing.TB, r *testRouter, mod func(*Config), ec EngineConfig) *testServer {
	t.Helper()
	cfg := serverConfig(t, r)
	if mod != nil {
		mod(cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := NewEngine(ec)
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, ln: ln, eng: eng, cfg: cfg, router: r, accept: make(chan *Conn, 64)}
	r.users.Add(1)
	userOnErr := cfg.OnError
	cfg.OnError = func(remote string, err error) {
		s.mu.Lock()
		s.errs = append(s.errs, err)
		s.mu.Unlock()
		if userOnErr != nil {
			userOnErr(remote, err)
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				c, err := Accept(context.Background(), eng, nc, cfg)
				s.mu.Lock()
				defer s.mu.Unlock()
				if err != nil {
					s.errs = append(s.errs, err)
					return
				}
				s.conns = append(s.conns, c)
				select {
				case s.accept <- c:
				default:
				}
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *testServer) addr() string { return s.ln.Addr().String() }

func (s *testServer) close() { s.closeOnce.Do(s.doClose) }

func (s *testServer) doClose() {
	_ = s.ln.Close()
	s.wg.Wait()
	_ = s.eng.Close()
	if s.router.users.Add(-1) == 0 {
		s.router.pool.Close()
	}
	s.mu.Lock()
	conns := s.conns
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Wait(context.Background())
	}
}

func (s *testServer) errors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

// waitErr waits until the server recorded an error matching target.
func (s *testServer) waitErr(target error, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		for _, e := range s.errors() {
			if errors.Is(e, target) {
				return e
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventually waits until cond holds, failing the test after 5s: tests
// wait for conditions, never for a fixed time.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func newClientEngine(t testing.TB) *Engine {
	t.Helper()
	eng, err := NewEngine(EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	return eng
}

func dialTest(t testing.TB, eng *Engine, addr string, mod func(*Config)) *Conn {
	t.Helper()
	cfg := clientConfig()
	if mod != nil {
		mod(cfg)
	}
	c, err := Dial(context.Background(), eng, addr, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func echoRoute(mode Mode) *Route {
	return &Route{Mode: mode, Unary: func(_ context.Context, r *Request) ([]byte, error) {
		return r.Payload, nil
	}}
}

// echoConcurrently makes callers goroutines call m on c each times with
// payload, checks every echo, and fails the test on the first error.
func echoConcurrently(t *testing.T, c *Conn, m uint64, payload []byte, callers, each int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			for range each {
				resp, err := c.Call(context.Background(), m, payload)
				if err == nil && !bytes.Equal(resp, payload) {
					err = errors.New("wrong echo")
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
