package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/client"
	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/server"
)

// A node's cluster and client ports share one Engine: both serve, and
// closing the client port closes its connections only; the cluster
// port's keep working, and the Engine stays open.
func TestSharedEngine(t *testing.T) {
	eng, err := conn.NewEngine(conn.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	key := []byte("shared-engine-cluster-key")
	start := func(cfg server.Config) (*server.Server, chan error) {
		cfg.BindAddr, cfg.Port, cfg.Certificate, cfg.Engine, cfg.Logger = "127.0.0.1", -1, &testCert(t).Cert, eng, quiet
		srv, err := server.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		must(t, server.Handle(srv, benchEcho, func(_ context.Context, b []byte) ([]byte, error) { return append([]byte(nil), b...), nil }))
		done := make(chan error, 1)
		go func() { done <- srv.Serve(context.Background()) }()
		<-srv.Ready()
		return srv, done
	}
	cluster, cdone := start(server.Config{ClusterKey: key})
	defer func() { _ = cluster.Close(); <-cdone }()
	clientPort, pdone := start(server.Config{Auth: service(t, auth.LoginLimit{}, users...)})

	peer, err := conn.Dial(context.Background(), eng, cluster.Addr().String(), &conn.Config{TLS: conn.ClientTLS("", nil), ClusterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	app, err := client.Start(context.Background(), clientPort.Addr().String(), "admin", "a", client.WithPinnedCertificate(testCert(t).CertPEM))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if _, err := benchEcho.Call(context.Background(), peer, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := benchEcho.Call(context.Background(), app, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := clientPort.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-pdone; !errors.Is(err, server.ErrServerClosed) {
		t.Fatal(err)
	}
	<-app.Done()
	if _, err := benchEcho.Call(context.Background(), peer, []byte("x")); err != nil {
		t.Fatalf("the cluster port after the client port closed: %v", err)
	}
	if cluster.Conns() != 1 {
		t.Fatalf("cluster port has %d connections", cluster.Conns())
	}
}
