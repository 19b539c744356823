package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/client"
	"github.com/hawser-rpc/hawser/devcert"
	"github.com/hawser-rpc/hawser/server"
)

// Price is an item of a feed; each may carry an observable of its trades.
type Price struct {
	Symbol string
	Cents  int64
	Trades *hawser.Observable[int64] `cbor:",omitempty"`
}

// Market is a reply that holds a feed of prices and a future total.
type Market struct {
	Prices *hawser.Observable[Price]
	Volume *hawser.Future[int64]
}

// A method whose reply holds an observable (whose items hold further
// observables) and a future: the client reads them as if they were local.
func Example_observables() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	watch := hawser.NewMethod[string, Market]("market.Watch")

	users, _ := auth.NewInMemory(auth.EncryptionNone, []auth.UserConfig{
		{Username: "alice", Password: "wonderland", Permissions: []string{"InvokeRpc.market.Watch"}},
	})
	svc, _ := auth.New(auth.Config{Source: users, Logger: quiet})
	cert, _ := devcert.SelfSigned("127.0.0.1")
	srv, err := server.New(server.Config{BindAddr: "127.0.0.1", Port: -1, Auth: svc, Certificate: &cert.Cert, Logger: quiet})
	if err != nil {
		panic(err)
	}
	_ = server.Handle(srv, watch, func(_ context.Context, symbol string) (Market, error) {
		prices := hawser.NewObservable(func(ctx context.Context, out hawser.Sender[Price]) error {
			for i := range int64(3) {
				trades := make(chan int64, 2)
				trades <- 10 * (i + 1)
				trades <- 20 * (i + 1)
				close(trades)
				if err := out.Send(Price{Symbol: symbol, Cents: 100 + i, Trades: hawser.ObservableOf(trades)}); err != nil {
					return err // the client unsubscribed or went away
				}
			}
			return nil
		}, hawser.WithOverflow(hawser.OverflowBlock))
		volume := hawser.NewFuture(func(ctx context.Context) (int64, error) { return 180, nil })
		return Market{Prices: prices, Volume: volume}, nil
	})
	go func() { _ = srv.Serve(context.Background()) }()
	defer srv.Close()

	c, err := client.Start(context.Background(), srv.Addr().String(), "alice", "wonderland",
		client.WithCA(cert.Pool(), "127.0.0.1"))
	if err != nil {
		panic(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // bounds the observables too
	defer cancel()
	m, err := watch.Call(ctx, c, "ACME")
	if err != nil {
		panic(err)
	}
	defer m.Prices.Close()
	for p, err := range m.Prices.All() {
		if err != nil {
			panic(err)
		}
		var trades []int64
		for t, err := range p.Trades.All() {
			if err != nil {
				panic(err)
			}
			trades = append(trades, t)
		}
		fmt.Println(p.Symbol, p.Cents, trades)
	}
	v, err := m.Volume.Get(ctx)
	fmt.Println("volume", v, err)
	// Output:
	// ACME 100 [10 20]
	// ACME 101 [20 40]
	// ACME 102 [30 60]
	// volume 180 <nil>
}
