package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/config"
	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/internal/certgen"
	"github.com/hawser-rpc/hawser/internal/leaktest"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(flooderEnv); addr != "" {
		runFlooder(addr)
		return
	}
	if addr := os.Getenv(silentEnv); addr != "" {
		runSilent(addr)
		return
	}
	if addr := os.Getenv(idleDialerEnv); addr != "" {
		runIdleDialer(addr)
		return
	}
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

var key = []byte("server-test-cluster-key")

// kv is a message with the encoding Binary interfaces.
type kv struct {
	Key   string
	Value uint64
}

func (m *kv) AppendBinary(b []byte) ([]byte, error) {
	b = binary.AppendUvarint(b, uint64(len(m.Key)))
	b = append(b, m.Key...)
	return binary.BigEndian.AppendUint64(b, m.Value), nil
}

func (m *kv) UnmarshalBinary(b []byte) error {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n+8 {
		return errors.New("kv: short")
	}
	m.Key = string(b[k : k+int(n)])
	m.Value = binary.BigEndian.Uint64(b[k+int(n):])
	return nil
}

var (
	errMissing = errors.New("kv: missing")
	Get        = hawser.NewMethod[*kv, *kv]("test.kv.Get")
	Echo       = hawser.NewMethod[[]byte, []byte]("test.Echo")
	Count      = hawser.NewStream[*kv, *kv]("test.kv.Count")
)

func init() { hawser.RegisterError("test.kv.Missing", codec.CodeNotFound, errMissing) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newServer(t testing.TB, mod func(*Config)) (*Server, string) {
	t.Helper()
	pair, err := certgen.SelfSigned("localhost")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{BindAddr: "127.0.0.1", Port: -1, Certificate: &pair.Cert, ClusterKey: key, NodeID: "srv", Logger: quiet()}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, ""
}

func serve(t testing.TB, s *Server) string {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return s.Addr().String()
}

func dial(t *testing.T, addr string) *conn.Conn {
	t.Helper()
	eng, err := conn.NewEngine(conn.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := conn.Dial(context.Background(), eng, addr, &conn.Config{TLS: conn.ClientTLS("", nil), ClusterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(); _ = eng.Close() })
	return c
}

func TestRefusesToStartWithoutCertificate(t *testing.T) {
	_, err := New(Config{ClusterKey: key})
	if !errors.Is(err, ErrNoCertificate) || !strings.Contains(err.Error(), "openssl req -x509") {
		t.Fatalf("got %v", err)
	}
	_, err = New(Config{ClusterKey: key, CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem"})
	if err == nil || !strings.Contains(err.Error(), "rpc-cert-path") {
		t.Fatalf("got %v", err)
	}
}

func TestConfigFromYAML(t *testing.T) {
	pair, err := certgen.SelfSigned("localhost")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pair.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pair.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf("rpc-bind-addr: 127.0.0.1\nrpc-port: 0\nrpc-cert-path: %s\nrpc-key-path: %s\nrpc-timeout: 300\nrpc-inactivity-timeout: 60000\ncluster-key: %s\nnode-id: yaml-node\n", cert, keyPath, key)
	path := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ConfigFromNode(n)
	if cfg.Timeout != 300*time.Millisecond || cfg.InactivityTimeout != time.Minute || cfg.Port != 7911 || cfg.NodeID != "yaml-node" {
		t.Fatalf("%+v", cfg)
	}
	cfg.Port = -1
	cfg.Logger = quiet()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := Handle(s, Echo, func(_ context.Context, b []byte) ([]byte, error) { return b, nil }); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	c := dial(t, addr)
	if c.PeerNodeID() != "yaml-node" {
		t.Fatalf("node id %q", c.PeerNodeID())
	}
	if out, err := Echo.Call(context.Background(), c, []byte("from yaml")); err != nil || string(out) != "from yaml" {
		t.Fatalf("%q %v", out, err)
	}
}

func TestTypedMethodsStreamsErrors(t *testing.T) {
	s, _ := newServer(t, nil)
	store := map[string]uint64{"a": 1, "b": 2}
	must(t, Handle(s, Get, func(_ context.Context, req *kv) (*kv, error) {
		v, ok := store[req.Key]
		if !ok {
			return nil, fmt.Errorf("key %q: %w", req.Key, errMissing)
		}
		return &kv{Key: req.Key, Value: v}, nil
	}))
	must(t, Handle(s, Echo, func(_ context.Context, b []byte) ([]byte, error) { return b, nil }, Inline()))
	must(t, HandleStream(s, Count, func(ctx context.Context, req *kv, out hawser.Sender[*kv]) error {
		for i := range req.Value {
			if err := out.Send(&kv{Key: req.Key, Value: i}); err != nil {
				return err
			}
		}
		return nil
	}))
	if err := Handle(s, Get, func(context.Context, *kv) (*kv, error) { return nil, nil }); err == nil {
		t.Fatal("duplicate registration accepted")
	}
	addr := serve(t, s)
	if err := Handle(s, hawser.NewMethod[[]byte, []byte]("late"), func(_ context.Context, b []byte) ([]byte, error) { return b, nil }); err == nil {
		t.Fatal("registration after Serve accepted")
	}
	c := dial(t, addr)
	got, err := Get.Call(context.Background(), c, &kv{Key: "b"})
	if err != nil || got.Value != 2 {
		t.Fatalf("%+v %v", got, err)
	}
	_, err = Get.Call(context.Background(), c, &kv{Key: "zz"})
	if !errors.Is(err, errMissing) || !errors.Is(err, hawser.ErrRemote) {
		t.Fatalf("got %v, want errMissing", err)
	}
	// A request the codec refuses: CodeInvalidArgument.
	_, err = c.Call(context.Background(), Get.ID(), []byte{0xff})
	var re *hawser.RemoteError
	if !errors.As(err, &re) || re.Code != codec.CodeInvalidArgument {
		t.Fatalf("got %v, want invalid argument", err)
	}
	r, err := Count.Open(context.Background(), c, &kv{Key: "n", Value: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var i uint64
	for item, err := range r.All() {
		if err != nil {
			t.Fatal(err)
		}
		if item.Value != i || item.Key != "n" {
			t.Fatalf("item %d: %+v", i, item)
		}
		i++
	}
	if i != 1000 {
		t.Fatalf("%d items", i)
	}
}

func TestMethodIDCollisionRefused(t *testing.T) {
	s, _ := newServer(t, nil)
	r := &conn.Route{Unary: func(context.Context, *conn.Request) ([]byte, error) { return nil, nil }}
	must(t, s.register("one", 42, r))
	if err := s.register("two", 42, r); err == nil || !strings.Contains(err.Error(), "same method ID") {
		t.Fatalf("got %v", err)
	}
	_ = s.Close()
}

func TestWorkerPoolFullPushesBack(t *testing.T) {
	s, _ := newServer(t, func(c *Config) { c.MaxWorkers, c.QueueSize = 2, 2 })
	release := make(chan struct{})
	must(t, Handle(s, Echo, func(ctx context.Context, b []byte) ([]byte, error) {
		<-release
		return b, nil
	}))
	addr := serve(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 { // one call on each of 10 connections
		c := dial(t, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Echo.Call(context.Background(), c, []byte("x"))
			errs <- err
		}()
	}
	// 4 are taken (2 running, 2 queued); the other 6 fail at once.
	for range 6 {
		err := <-errs
		var re *hawser.RemoteError
		if !errors.As(err, &re) || re.Code != codec.CodeResourceExhausted {
			t.Fatalf("got %v, want resource exhausted", err)
		}
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("admitted call failed: %v", err)
		}
	}
}

// One connection's calls beyond its share of the pool wait for its
// running ones instead of being refused, and leave the rest of the pool to
// other connections.
func TestPoolShareQueuesPerConnection(t *testing.T) {
	s, _ := newServer(t, func(c *Config) { c.MaxWorkers, c.QueueSize = 16, 1 }) // share: 2
	release := make(chan struct{})
	var running, peak atomic.Int32
	must(t, Handle(s, Echo, func(ctx context.Context, b []byte) ([]byte, error) {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		defer running.Add(-1)
		if string(b) == "slow" {
			<-release
		}
		return b, nil
	}))
	addr := serve(t, s)
	greedy := dial(t, addr)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Echo.Call(context.Background(), greedy, []byte("slow"))
			errs <- err
		}()
	}
	waitFor(t, func() bool { return running.Load() == 2 && greedy.InFlight() == 50 })
	other := dial(t, addr)
	for range 20 {
		if _, err := Echo.Call(context.Background(), other, []byte("fast")); err != nil {
			t.Fatalf("a second connection next to a greedy one: %v", err)
		}
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a queued call failed: %v", err)
		}
	}
	if p := peak.Load(); p > 3 {
		t.Fatalf("%d handlers ran at once; the greedy connection's share is 2", p)
	}
}

func TestShutdownDrains(t *testing.T) {
	s, _ := newServer(t, nil)
	started := make(chan struct{}, 3)
	release := make(chan struct{})
	must(t, Handle(s, Echo, func(ctx context.Context, b []byte) ([]byte, error) {
		started <- struct{}{}
		<-release
		return b, nil
	}))
	addr := serve(t, s)
	c := dial(t, addr)
	results := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := Echo.Call(context.Background(), c, []byte("x"))
			results <- err
		}()
	}
	for range 3 {
		<-started
	}
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	deadline := time.Now().Add(5 * time.Second)
	for !c.Draining() {
		if time.Now().After(deadline) {
			t.Fatal("client never saw the GOAWAY")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	for range 3 {
		if err := <-results; err != nil {
			t.Fatalf("in-flight call failed during shutdown: %v", err)
		}
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(time.Second):
		t.Fatal("client connection still open after Shutdown")
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitFor waits until cond holds, failing the test after 5s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for a condition")
		}
		time.Sleep(time.Millisecond)
	}
}
