package conn_test

import (
	"context"
	"fmt"
	"net"

	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/devcert"
)

// router serves a fixed table of routes, each pool task on a goroutine of
// its own (the server package bounds them with a worker pool).
type router struct {
	routes map[uint64]*conn.Route
}

func (r *router) Route(m uint64) *conn.Route { return r.routes[m] }
func (r *router) Methods() []uint64 {
	var ids []uint64
	for id := range r.routes {
		ids = append(ids, id)
	}
	return ids
}
func (r *router) Submit(t conn.Task) bool { go t.Run(); return true }
func (r *router) Go(f func())             { go f() }

// One connection without the server and pool packages: Accept on one side,
// Dial on the other, a raw call between them.
func ExampleDial() {
	key := []byte("example-cluster-key")
	cert, _ := devcert.SelfSigned("localhost")
	echo := codec.MethodID("echo")
	r := &router{routes: map[uint64]*conn.Route{
		echo: {Mode: conn.ModeInline, Unary: func(_ context.Context, req *conn.Request) ([]byte, error) {
			return req.Payload, nil // valid until the handler returns; copied into the reply
		}},
	}}

	eng, _ := conn.NewEngine(conn.EngineConfig{})
	defer eng.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = conn.Accept(context.Background(), eng, nc, &conn.Config{
			TLS: conn.ServerTLS(cert.Cert), ClusterKey: key, NodeID: "server", Router: r,
		})
	}()

	c, err := conn.Dial(context.Background(), eng, ln.Addr().String(), &conn.Config{
		TLS: conn.ClientTLS("", nil), ClusterKey: key,
	})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	reply, err := c.Call(context.Background(), echo, []byte("ping"))
	fmt.Println(c.PeerNodeID(), string(reply), err)
	// Output: server ping <nil>
}
