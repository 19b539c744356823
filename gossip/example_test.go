package gossip_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hawser-rpc/hawser/config"
	"github.com/hawser-rpc/hawser/gossip"
	"github.com/hawser-rpc/hawser/pool"
	"github.com/hawser-rpc/hawser/server"
)

// A simulated three-node cluster: the nodes join through the first, one
// is killed, and the others find it dead. Simulated time: the run takes
// milliseconds and prints the same thing every time.
func Example() {
	clock := gossip.NewVirtualClock(time.Unix(0, 0))
	net := gossip.NewMemNetwork(clock, 1)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var nodes []*gossip.Gossip
	for i, name := range []string{"a", "b", "c"} {
		addr := name + ":7911"
		cfg := gossip.Config{
			NodeID:     name,
			ClusterKey: []byte("an example cluster key, 32 bytes"),
			Clock:      net.Clock(addr),
			Seed:       uint64(i + 1),
			Logger:     quiet,
		}
		if i > 0 {
			cfg.Seeds = []string{"a:7911"}
		}
		g, err := gossip.New(cfg, net.Transport(addr))
		if err != nil {
			panic(err)
		}
		defer g.Shutdown()
		nodes = append(nodes, g)
	}
	events := nodes[0].Subscribe(0)
	clock.RunFor(5 * time.Second)
	fmt.Println("a sees", nodes[0].NumAlive(), "members alive")

	_ = nodes[2].Shutdown() // killed: no leave
	clock.RunFor(30 * time.Second)
	for {
		select {
		case ev := <-events.C:
			fmt.Println(ev.Kind, ev.Member.ID)
			continue
		default:
		}
		break
	}
	// Output:
	// a sees 3 members alive
	// join c
	// join b
	// suspect c
	// dead c
}

// The production wiring: gossip on UDP on the RPC server's address and
// port, exchanges through the pool, membership driving the pool.
func ExampleNewUDPTransport() {
	node, err := config.Load("node.yaml") // rpc-*, cluster-key, seed-nodes, data-dir, gossip-*
	if err != nil {
		panic(err)
	}
	srv, err := server.New(server.ConfigFromNode(node))
	if err != nil {
		panic(err)
	}
	pcfg, err := pool.ConfigFromNode(node)
	if err != nil {
		panic(err)
	}
	peers, err := pool.New(pcfg)
	if err != nil {
		panic(err)
	}
	tr, err := gossip.NewUDPTransport(gossip.UDPConfig{Server: srv, Pool: peers, AdvertiseAddr: node.GossipAdvertiseAddr})
	if err != nil { // before Serve: the gossip method must be registered
		panic(err)
	}
	go func() { _ = srv.Serve(context.Background()) }()
	<-srv.Ready()
	g, err := gossip.New(gossip.ConfigFromNode(node), tr) // joins seed-nodes
	if err != nil {
		panic(err)
	}
	hook := gossip.NewPoolHook(g, peers) // alive: MarkAlive; dead or left: MarkDead
	defer func() {
		hook.Close()
		_ = g.Leave()
		_ = peers.Close()
		_ = srv.Shutdown(context.Background())
	}()
	for _, m := range g.Members() {
		fmt.Println(m.ID, m.Addr, m.State)
	}
}
