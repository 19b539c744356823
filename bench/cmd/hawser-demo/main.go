// Command hawser-demo runs hawser end to end in one process with nothing to
// set up: a server with a freshly generated self-signed certificate and a
// random cluster key, a pool that dials it over TLS, a concurrent workload
// of unary calls and one server-push stream. It prints calls/s and latency
// percentiles. Run it with `make demo`.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/internal/certgen"
	"github.com/hawser-rpc/hawser/pool"
	"github.com/hawser-rpc/hawser/server"
)

var (
	Echo  = hawser.NewMethod[[]byte, []byte]("demo.Echo")
	Ticks = hawser.NewStream[[]byte, []byte]("demo.Ticks")
)

func main() {
	duration := flag.Duration("duration", 3*time.Second, "how long the unary workload runs")
	conc := flag.Int("conc", 64, "concurrent callers")
	size := flag.Int("size", 1024, "payload bytes per call")
	items := flag.Int("items", 1_000_000, "items in the stream")
	flag.Parse()
	if err := run(*duration, *conc, *size, *items); err != nil {
		fmt.Fprintln(os.Stderr, "hawser-demo:", err)
		os.Exit(1)
	}
}

func run(duration time.Duration, conc, size, items int) error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cert, err := certgen.SelfSigned("localhost", "127.0.0.1")
	if err != nil {
		return err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}

	srv, err := server.New(server.Config{
		BindAddr: "127.0.0.1", Port: -1, Certificate: &cert.Cert,
		ClusterKey: key, NodeID: "demo-server", Logger: quiet,
	})
	if err != nil {
		return err
	}
	if err := server.Handle(srv, Echo, func(_ context.Context, b []byte) ([]byte, error) { return b, nil }); err != nil {
		return err
	}
	if err := server.HandleStream(srv, Ticks, func(ctx context.Context, req []byte, out hawser.Sender[[]byte]) error {
		n := binary.BigEndian.Uint64(req)
		item := make([]byte, 64)
		for i := range n {
			binary.BigEndian.PutUint64(item, i)
			if err := out.Send(item); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background()) }()
	<-srv.Ready()
	addr := srv.Addr().String()

	p, err := pool.New(pool.Config{
		Conn:   conn.Config{TLS: conn.ClientTLS("", nil), ClusterKey: key, NodeID: "demo-client"},
		Logger: quiet,
	})
	if err != nil {
		return err
	}
	peer := p.Peer(addr)
	fmt.Printf("hawser demo: server on %s (TLS 1.3, self-signed certificate, random cluster key)\n", addr)

	// Unary: conc callers for duration, through the pool.
	hist := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
	var mu sync.Mutex
	var calls, failures atomic.Int64
	payload := make([]byte, size)
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
			for ctx.Err() == nil {
				t0 := time.Now()
				out, err := Echo.Call(context.Background(), peer, payload)
				if err != nil || len(out) != size {
					failures.Add(1)
					continue
				}
				_ = local.RecordValue(time.Since(t0).Microseconds())
				calls.Add(1)
			}
			mu.Lock()
			hist.Merge(local)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	fmt.Printf("unary echo, %d B, %d callers, %v: %.0f calls/s, p50 %dµs, p99 %dµs, p99.9 %dµs, max %dµs, errors %d\n",
		size, conc, elapsed.Round(time.Millisecond), float64(calls.Load())/elapsed.Seconds(),
		hist.ValueAtQuantile(50), hist.ValueAtQuantile(99), hist.ValueAtQuantile(99.9), hist.Max(), failures.Load())

	// One stream of items, flow-controlled.
	req := binary.BigEndian.AppendUint64(nil, uint64(items))
	start = time.Now()
	r, err := Ticks.Open(context.Background(), peer, req)
	if err != nil {
		return err
	}
	var got uint64
	for item, err := range r.All() {
		if err != nil {
			return err
		}
		if binary.BigEndian.Uint64(item) != got {
			return fmt.Errorf("stream item %d out of order", got)
		}
		got++
	}
	if got != uint64(items) {
		return fmt.Errorf("stream ended after %d of %d items", got, items)
	}
	elapsed = time.Since(start)
	fmt.Printf("stream, 64 B items: %d items in %v: %.0f items/s\n", got, elapsed.Round(time.Millisecond), float64(got)/elapsed.Seconds())

	if err := p.Close(); err != nil {
		return err
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, server.ErrServerClosed) {
		return err
	}
	return nil
}
