package raft

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/internal/certgen"
	"github.com/hawser-rpc/hawser/internal/leaktest"
	"github.com/hawser-rpc/hawser/pool"
	"github.com/hawser-rpc/hawser/server"
)

var leakOpts = leaktest.Options()

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leakOpts...) }

// noLeaks checks, after every other cleanup of t, that the goroutines are
// back to what they were (call it first in a test).
func noLeaks(t *testing.T) {
	t.Helper()
	base := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if err := goleak.Find(append(leakOpts, base)...); err != nil {
			t.Error(err)
		}
	})
}

var clusterKey = []byte("raft-test-cluster-key-0123456789")

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var testPair = sync.OnceValue(func() *certgen.Pair {
	p, err := certgen.SelfSigned("localhost", "127.0.0.1")
	if err != nil {
		panic(err)
	}
	return p
})

// node is one hawser endpoint: a server on a loopback port, a pool, and a
// Transport, torn down by the test's cleanup.
type node struct {
	srv  *server.Server
	pool *pool.Pool
	tr   *Transport
	addr hraft.ServerAddress
	done chan error
	once sync.Once
}

type nodeOpts struct {
	cfg  func(*Config)
	srv  func(*server.Config)
	pool func(*pool.Config)
}

func newNode(t testing.TB, o nodeOpts) *node {
	t.Helper()
	scfg := server.Config{BindAddr: "127.0.0.1", Port: -1, Certificate: &testPair().Cert, ClusterKey: clusterKey, Logger: quiet}
	if o.srv != nil {
		o.srv(&scfg)
	}
	srv, err := server.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	pcfg := pool.Config{
		Conn:        conn.Config{TLS: conn.ClientTLS("", nil), ClusterKey: clusterKey},
		BackoffBase: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		Logger: quiet,
	}
	if o.pool != nil {
		o.pool(&pcfg)
	}
	p, err := pool.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Server: srv, Pool: p, Logger: quiet}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{srv: srv, pool: p, tr: tr, done: make(chan error, 1)}
	go func() { n.done <- srv.Serve(context.Background()) }()
	select {
	case <-srv.Ready():
	case err := <-n.done:
		t.Fatal(err)
	}
	n.addr = tr.LocalAddr()
	t.Cleanup(n.stop)
	return n
}

// stop closes the transport, the pool and the server (idempotent).
func (n *node) stop() {
	n.once.Do(func() {
		_ = n.tr.Close()
		_ = n.pool.Close()
		_ = n.srv.Close()
		<-n.done
	})
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
