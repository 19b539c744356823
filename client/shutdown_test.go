package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/client"
	"github.com/hawser-rpc/hawser/server"
)

// Shutdown of a client port delivers the reply of a call in flight, and
// the client sees the connection go away afterwards.
func TestClientPortShutdownDelivers(t *testing.T) {
	slow := hawser.NewMethod[[]byte, []byte]("slow")
	entered, release := make(chan struct{}), make(chan struct{})
	srv, err := server.New(server.Config{BindAddr: "127.0.0.1", Port: -1, Certificate: &testCert(t).Cert,
		Auth: service(t, auth.LoginLimit{}, users...), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	must(t, server.Handle(srv, slow, func(_ context.Context, b []byte) ([]byte, error) {
		close(entered)
		<-release
		return append([]byte("done "), b...), nil
	}))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	<-srv.Ready()
	c, err := client.Start(context.Background(), srv.Addr().String(), "admin", "a", client.WithPinnedCertificate(testCert(t).CertPEM))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reply := make(chan error, 1)
	go func() {
		out, err := slow.Call(context.Background(), c, []byte("x"))
		if err == nil && string(out) != "done x" {
			err = errors.New("reply " + string(out))
		}
		reply <- err
	}()
	<-entered
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	for deadline := time.Now().Add(10 * time.Second); !c.Conn().Draining(); { // the GOAWAY reached the client
		if time.Now().After(deadline) {
			t.Fatal("the client never saw the GOAWAY")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-reply; err != nil {
		t.Fatalf("the call in flight: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; !errors.Is(err, server.ErrServerClosed) {
		t.Fatal(err)
	}
	<-c.Done()
}
