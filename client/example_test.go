package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/client"
	"github.com/hawser-rpc/hawser/devcert"
	"github.com/hawser-rpc/hawser/server"
)

// A node's client port over TLS with two users, and a client that logs in,
// calls, starts a flow, and is refused what its permissions do not allow.
func Example() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	upper := hawser.NewMethod[[]byte, []byte]("text.Upper")
	lower := hawser.NewMethod[[]byte, []byte]("text.Lower")
	greet := hawser.NewFlow[[]byte, []byte]("greet")

	// The server: users as in rpc-users, a development certificate.
	users, _ := auth.NewInMemory(auth.EncryptionNone, []auth.UserConfig{
		{Username: "alice", Password: "wonderland", Permissions: []string{"InvokeRpc.text.Upper", "StartFlow.greet"}},
	})
	svc, _ := auth.New(auth.Config{Source: users, Logger: quiet})
	cert, _ := devcert.SelfSigned("127.0.0.1")
	srv, err := server.New(server.Config{BindAddr: "127.0.0.1", Port: -1, Auth: svc, Certificate: &cert.Cert,
		PlatformVersion: 2, Logger: quiet})
	if err != nil {
		panic(err)
	}
	_ = server.Handle(srv, upper, func(_ context.Context, b []byte) ([]byte, error) { return []byte(strings.ToUpper(string(b))), nil })
	_ = server.Handle(srv, lower, func(_ context.Context, b []byte) ([]byte, error) { return []byte(strings.ToLower(string(b))), nil })
	_ = server.RegisterFlow(srv, greet, func(ctx context.Context, b []byte) ([]byte, error) {
		user, _ := server.User(ctx)
		return []byte("hello " + string(b) + " from " + user), nil
	})
	go func() { _ = srv.Serve(context.Background()) }()
	defer srv.Close()

	// The client: one connection, reused for every call.
	c, err := client.Start(context.Background(), srv.Addr().String(), "alice", "wonderland",
		client.WithCA(cert.Pool(), "127.0.0.1"))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Println("platform version", c.PlatformVersion())

	out, err := upper.Call(context.Background(), c, []byte("hawser"))
	fmt.Println(string(out), err)
	out, err = greet.Start(context.Background(), c, []byte("world"))
	fmt.Println(string(out), err)
	_, err = lower.Call(context.Background(), c, []byte("HAWSER"))
	fmt.Println(errors.Is(err, hawser.ErrPermissionDenied))

	_, err = client.Start(context.Background(), srv.Addr().String(), "alice", "guess", client.WithCA(cert.Pool(), "127.0.0.1"))
	fmt.Println(errors.Is(err, hawser.ErrLoginFailed))
	// Output:
	// platform version 2
	// HAWSER <nil>
	// hello world from alice <nil>
	// true
	// true
}

// A reconnecting client across a restart of its node: the call made while
// the node is down waits for the reconnect; an idempotent method's calls,
// and a flow started with a request ID, may be sent again.
func ExampleStartReconnecting() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	get := hawser.NewMethod[[]byte, []byte]("kv.Get", hawser.Idempotent())
	pay := hawser.NewFlow[[]byte, []byte]("pay") // not idempotent: never started twice

	users, _ := auth.NewInMemory(auth.EncryptionNone, []auth.UserConfig{
		{Username: "alice", Password: "wonderland", Permissions: []string{"ALL"}},
	})
	svc, _ := auth.New(auth.Config{Source: users, Logger: quiet})
	cert, _ := devcert.SelfSigned("127.0.0.1")
	serve := func(port int) *server.Server {
		srv, err := server.New(server.Config{BindAddr: "127.0.0.1", Port: port, Auth: svc, Certificate: &cert.Cert, Logger: quiet})
		if err != nil {
			panic(err)
		}
		_ = server.Handle(srv, get, func(_ context.Context, k []byte) ([]byte, error) { return append([]byte("value of "), k...), nil })
		_ = server.RegisterFlow(srv, pay, func(_ context.Context, b []byte) ([]byte, error) { return append([]byte("paid "), b...), nil })
		go func() { _ = srv.Serve(context.Background()) }()
		<-srv.Ready()
		return srv
	}
	srv := serve(-1)
	addr, port := srv.Addr().String(), srv.Addr().(*net.TCPAddr).Port

	lost, back := make(chan error, 1), make(chan string, 1)
	c, err := client.StartReconnecting(context.Background(), []string{addr}, "alice", "wonderland",
		client.WithCA(cert.Pool(), "127.0.0.1"),
		client.WithBackoff(client.Backoff{Initial: 10 * time.Millisecond, Max: time.Second}),
		client.OnDisconnect(func(err error) { lost <- err }),
		client.OnReconnect(func(addr string) { back <- addr }))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	out, err := get.Call(context.Background(), c, []byte("a"))
	fmt.Println(string(out), err)

	_ = srv.Close() // the node restarts on the same address
	fmt.Println("lost:", errors.Is(<-lost, hawser.ErrTransport))
	srv = serve(port)
	defer srv.Close()
	fmt.Println("back at the same address:", <-back == addr)

	out, err = get.Call(context.Background(), c, []byte("b"))
	fmt.Println(string(out), err)
	out, err = pay.Start(context.Background(), c, []byte("10"), hawser.WithRequestID(hawser.NewRequestID()))
	fmt.Println(string(out), err)
	// Output:
	// value of a <nil>
	// lost: true
	// back at the same address: true
	// value of b <nil>
	// paid 10 <nil>
}
