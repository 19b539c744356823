package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/hawser-rpc/hawser/bench/internal/impl"
	"github.com/hawser-rpc/hawser/bench/internal/load"
)

// serveMain is the server process: it prints "ADDR host:port", then answers
// "stats" lines on stdin with "STATS cpu-ns mallocs context-switches" (its
// load.Sample so far), and exits when stdin closes.
func serveMain(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	name := fs.String("impl", "hawser", "implementation")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	certFile := fs.String("cert", "", "PEM certificate")
	keyFile := fs.String("key", "", "PEM key")
	clusterKey := fs.String("cluster-key", "", "hex cluster key (hawser)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	im, err := impl.Get(*name)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return err
	}
	key, err := hex.DecodeString(*clusterKey)
	if err != nil {
		return err
	}
	srv, err := im.Serve(impl.ServerConfig{Addr: *addr, Cert: cert, ClusterKey: key})
	if err != nil {
		return err
	}
	fmt.Printf("ADDR %s\n", srv.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "stats" {
			u := load.Sample()
			fmt.Printf("STATS %d %d %d\n", u.CPUNs, u.Mallocs, u.CtxSwitches)
		}
	}
	return srv.Close()
}

// clientMain is the client process: it connects, warms up, prints READY,
// waits for GO on stdin, measures, prints MEASURED as the window closes, and
// prints RESULT with a JSON body (load.Result: its own usage is sampled
// after GO and before MEASURED).
func clientMain(args []string) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	name := fs.String("impl", "hawser", "implementation")
	addr := fs.String("addr", "", "server address")
	clusterKey := fs.String("cluster-key", "", "hex cluster key (hawser)")
	scenario := fs.String("scenario", "unary", "unary or stream")
	size := fs.Int("size", 1024, "payload bytes")
	conc := fs.Int("conc", 1, "concurrent callers or streams")
	conns := fs.Int("conns", 1, "connections")
	rate := fs.Float64("rate", 0, "open loop: calls/s (0: closed loop)")
	warmup := fs.Duration("warmup", time.Second, "warm-up")
	duration := fs.Duration("duration", 5*time.Second, "measured window")
	if err := fs.Parse(args); err != nil {
		return err
	}
	im, err := impl.Get(*name)
	if err != nil {
		return err
	}
	key, err := hex.DecodeString(*clusterKey)
	if err != nil {
		return err
	}
	c, err := im.Dial(impl.ClientConfig{Addr: *addr, Conns: *conns, Conc: *conc, ClusterKey: key})
	if err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	res := load.Run(context.Background(), c, load.Spec{Scenario: *scenario, Size: *size, Conc: *conc, Rate: *rate},
		*warmup, *duration, func() {
			fmt.Println("READY")
			for in.Scan() && in.Text() != "GO" {
			}
		}, func() { fmt.Println("MEASURED") })
	_ = c.Close()
	out, err := json.Marshal(res)
	if err != nil {
		return err
	}
	fmt.Printf("RESULT %s\n", out)
	return nil
}
