package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/client"
	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/server"
)

var benchEcho = hawser.NewMethod[[]byte, []byte]("bench.Echo")

// serveEcho serves bench.Echo on a cluster port (auth nil) or a client
// port, over TLS on loopback.
func serveEcho(b *testing.B, svc *auth.Service) string {
	cfg := server.Config{BindAddr: "127.0.0.1", Port: -1, Certificate: &testCert(b).Cert,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if svc != nil {
		cfg.Auth = svc
	} else {
		cfg.ClusterKey = []byte("bench-cluster-key-0123456789")
	}
	srv, err := server.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	must(b, server.Handle(srv, benchEcho, func(_ context.Context, req []byte) ([]byte, error) {
		return append([]byte(nil), req...), nil
	}))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	<-srv.Ready()
	b.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, server.ErrServerClosed) {
			b.Error(err)
		}
	})
	return srv.Addr().String()
}

// BenchmarkClientPort compares calls/s of 64-byte echo calls from 64
// goroutines through one connection: to a cluster port (cluster key, no
// permission check) and to a client port (login, a permission check per
// call against an in-memory user with InvokeRpc.bench.Echo, or ALL). The
// ratio of the client rows to the cluster row is the layer's cost.
func BenchmarkClientPort(b *testing.B) {
	payload := make([]byte, 64)
	run := func(b *testing.B, c hawser.Caller) {
		b.SetParallelism(32) // 64 callers on 2 Ps
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := benchEcho.Call(context.Background(), c, payload); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
	}
	b.Run("cluster", func(b *testing.B) {
		addr := serveEcho(b, nil)
		eng, err := conn.NewEngine(conn.EngineConfig{Loops: 1}) // as client.Start's
		if err != nil {
			b.Fatal(err)
		}
		defer eng.Close()
		c, err := conn.Dial(context.Background(), eng, addr, &conn.Config{TLS: conn.ClientTLS("", nil), ClusterKey: []byte("bench-cluster-key-0123456789"), DialRead: conn.DialReadLoop})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		run(b, c)
	})
	for _, perm := range []string{"InvokeRpc.bench.Echo", "ALL"} {
		b.Run("client/"+perm, func(b *testing.B) {
			addr := serveEcho(b, service(b, auth.LoginLimit{}, auth.UserConfig{Username: "u", Password: "p", Permissions: []string{perm}}))
			c, err := client.Start(context.Background(), addr, "u", "p", client.WithPinnedCertificate(testCert(b).CertPEM),
				client.WithConnConfig(func(cc *conn.Config) { cc.DialRead = conn.DialReadLoop }))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			run(b, c)
		})
	}
}
