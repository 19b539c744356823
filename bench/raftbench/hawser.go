package raftbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/pool"
	hraftt "github.com/hawser-rpc/hawser/raft"
	"github.com/hawser-rpc/hawser/server"
)

func init() { factories["hawser"] = newHawserEndpoints }

// quietSlog silences hawser's server and pool.
var quietSlog = slog.New(slog.NewTextHandler(io.Discard, nil))

// newHawserEndpoints makes each node as a deployment does: an RPC server
// (TLS 1.3 with the shared certificate, the cluster key) on a loopback
// port, a pool that dials its peers verifying that certificate, each with
// its own event-loop engine, and hawser's raft transport over both.
func newHawserEndpoints(n int, c *creds) ([]*endpoint, error) {
	return makeEach(n, func(i int) (*endpoint, error) { return newHawserEndpoint(fmt.Sprintf("n%d", i), c) })
}

func newHawserEndpoint(id string, c *creds) (*endpoint, error) {
	srv, err := server.New(server.Config{BindAddr: "127.0.0.1", Port: -1, Certificate: &c.leaf.Cert,
		ClusterKey: c.clusterKey, NodeID: id, Logger: quietSlog})
	if err != nil {
		return nil, err
	}
	p, err := pool.New(pool.Config{Conn: conn.Config{TLS: conn.ClientTLS("localhost", c.ca.Pool()),
		ClusterKey: c.clusterKey, NodeID: id}, Logger: quietSlog})
	if err != nil {
		return nil, errors.Join(err, srv.Close())
	}
	tr, err := hraftt.New(hraftt.Config{Server: srv, Pool: p, Logger: quietSlog}) // registers its methods: before Serve
	if err != nil {
		return nil, errors.Join(err, p.Close(), srv.Close())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background()) }()
	// The transport, then the pool, then the server (and its Serve).
	release := func() error {
		errs := []error{p.Close(), srv.Close()}
		if err := <-served; !errors.Is(err, server.ErrServerClosed) {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	select {
	case <-srv.Ready():
	case err := <-served:
		served <- err
		return nil, errors.Join(fmt.Errorf("raftbench: hawser node %s: %w", id, err), tr.Close(), release())
	}
	return &endpoint{tr: tr, release: release}, nil
}
