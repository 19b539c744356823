package raft_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"

	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/devcert"
	"github.com/hawser-rpc/hawser/pool"
	hawserraft "github.com/hawser-rpc/hawser/raft"
	"github.com/hawser-rpc/hawser/server"
)

type countFSM struct{ n int }

func (f *countFSM) Apply(*hraft.Log) any { f.n++; return f.n }
func (f *countFSM) Snapshot() (hraft.FSMSnapshot, error) {
	return nil, fmt.Errorf("not in this example")
}
func (f *countFSM) Restore(rc io.ReadCloser) error { return rc.Close() }

// A node runs raft on its hawser server: the transport registers its
// methods before the server serves, dials peers through the pool, and
// addresses are hawser addresses (host:rpc-port). One node here; a cluster
// bootstraps with every node's ID and LocalAddr.
func ExampleNew() {
	pair, _ := devcert.SelfSigned("localhost")
	key := []byte("example-cluster-key-0123456789ab")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	srv, _ := server.New(server.Config{BindAddr: "127.0.0.1", Port: -1, Certificate: &pair.Cert, ClusterKey: key, Logger: quiet})
	p, _ := pool.New(pool.Config{Conn: conn.Config{TLS: conn.ClientTLS("", nil), ClusterKey: key}, Logger: quiet})
	tr, err := hawserraft.New(hawserraft.Config{Server: srv, Pool: p, Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background()) }()
	<-srv.Ready()

	cfg := hraft.DefaultConfig()
	cfg.LocalID = "n1"
	cfg.Logger = hclog.NewNullLogger()
	store := hraft.NewInmemStore()
	r, _ := hraft.NewRaft(cfg, &countFSM{}, store, store, hraft.NewInmemSnapshotStore(), tr)
	_ = r.BootstrapCluster(hraft.Configuration{Servers: []hraft.Server{{ID: "n1", Address: tr.LocalAddr()}}}).Error()
	for r.State() != hraft.Leader {
		time.Sleep(10 * time.Millisecond)
	}
	f := r.Apply([]byte("hello"), time.Second)
	fmt.Println(f.Error(), f.Response())

	_ = r.Shutdown().Error()
	_ = tr.Close() // the transport, then the pool, then the server
	_ = p.Close()
	_ = srv.Close()
	<-served
	// Output: <nil> 1
}
