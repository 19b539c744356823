package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/server"
)

// BenchReply holds an observable of raw 64-byte items.
type BenchReply struct {
	Items *hawser.Observable[[]byte]
}

type benchObsReq struct {
	N     uint64
	Block bool
}

var (
	benchStream  = hawser.NewStream[uint64, []byte]("bench.Stream")
	benchObserve = hawser.NewMethod[benchObsReq, BenchReply]("bench.Observe")
)

// BenchmarkObservable compares items/s of 64-byte items delivered to one
// consumer through the client port: a server stream (hawser.Stream), and
// an observable inside a reply, with the kick policy (items pass through
// the client's buffer on the server) and the block policy (the producer
// writes to the stream). The observable rows over the stream row are the
// layer's cost. b.N is the number of items.
func BenchmarkObservable(b *testing.B) {
	svc := service(b, auth.LoginLimit{}, auth.UserConfig{Username: "bench", Password: "pw", Permissions: []string{"ALL"}})
	cfg := server.Config{BindAddr: "127.0.0.1", Port: -1, Certificate: &testCert(b).Cert, Auth: svc,
		Observables: server.ObservableConfig{BufferBytes: 1 << 30}, // the producer outruns the consumer
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv, err := server.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	item := make([]byte, 64)
	produce := func(n uint64, out hawser.Sender[[]byte]) error {
		for range n {
			if err := out.Send(item); err != nil {
				return err
			}
		}
		return nil
	}
	must(b, server.HandleStream(srv, benchStream, func(_ context.Context, n uint64, out hawser.Sender[[]byte]) error {
		return produce(n, out)
	}))
	must(b, server.Handle(srv, benchObserve, func(_ context.Context, r benchObsReq) (BenchReply, error) {
		p := hawser.OverflowKick
		if r.Block {
			p = hawser.OverflowBlock
		}
		return BenchReply{Items: hawser.NewObservable(func(_ context.Context, out hawser.Sender[[]byte]) error {
			return produce(r.N, out)
		}, hawser.WithOverflow(p))}, nil
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
	n := &node{srv: srv, addr: srv.Addr().String(), cert: testCert(b)}
	c := n.dial(b, "bench", "pw")
	ctx := context.Background()

	drain := func(b *testing.B, recv func() ([]byte, error)) {
		got := 0
		for {
			it, err := recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if len(it) != 64 {
				b.Fatalf("item of %d bytes", len(it))
			}
			got++
		}
		if got != b.N {
			b.Fatalf("%d items, want %d", got, b.N)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
	}
	b.Run("stream", func(b *testing.B) {
		b.ReportAllocs()
		r, err := benchStream.Open(ctx, c, uint64(b.N))
		if err != nil {
			b.Fatal(err)
		}
		drain(b, r.Recv)
	})
	for _, block := range []bool{false, true} {
		name := "observable/kick"
		if block {
			name = "observable/block"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			rep, err := benchObserve.Call(ctx, c, benchObsReq{N: uint64(b.N), Block: block})
			if err != nil {
				b.Fatal(err)
			}
			defer rep.Items.Close()
			drain(b, rep.Items.Recv)
		})
	}
}
