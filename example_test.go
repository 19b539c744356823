package hawser_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/devcert"
	"github.com/hawser-rpc/hawser/pool"
	"github.com/hawser-rpc/hawser/server"
)

// One definition of each method, shared by client and server.
var (
	Upper = hawser.NewMethod[[]byte, []byte]("example.Upper")
	Count = hawser.NewStream[[]byte, []byte]("example.Count")
)

// A server and a client over TLS on loopback: a unary call and a stream.
func Example() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cert, _ := devcert.SelfSigned("localhost")
	clusterKey, _ := devcert.ClusterKey()
	key := []byte(clusterKey)

	srv, err := server.New(server.Config{BindAddr: "127.0.0.1", Port: -1, Certificate: &cert.Cert, ClusterKey: key, Logger: quiet})
	if err != nil {
		panic(err)
	}
	_ = server.Handle(srv, Upper, func(_ context.Context, b []byte) ([]byte, error) {
		return []byte(strings.ToUpper(string(b))), nil
	})
	_ = server.HandleStream(srv, Count, func(ctx context.Context, req []byte, out hawser.Sender[[]byte]) error {
		for _, w := range strings.Fields(string(req)) {
			if err := out.Send([]byte(w)); err != nil {
				return err
			}
		}
		return nil
	})
	go func() { _ = srv.Serve(context.Background()) }()
	defer srv.Close()

	peers, err := pool.New(pool.Config{
		Conn:   conn.Config{TLS: conn.ClientTLS("", nil), ClusterKey: key}, // no rpc-tls-domain: the cluster key authenticates
		Logger: quiet,
	})
	if err != nil {
		panic(err)
	}
	defer peers.Close()
	peer := peers.Peer(srv.Addr().String())

	out, err := Upper.Call(context.Background(), peer, []byte("hello, hawser"))
	fmt.Println(string(out), err)

	words, err := Count.Open(context.Background(), peer, []byte("one two three"))
	if err != nil {
		panic(err)
	}
	for w, err := range words.All() {
		fmt.Println(string(w), err)
	}
	// Output:
	// HELLO, HAWSER <nil>
	// one <nil>
	// two <nil>
	// three <nil>
}
