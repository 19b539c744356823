package conn

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/panjf2000/gnet/v2"
)

// Benchmarks run client and server in this process, over TLS 1.3 on
// loopback, one connection. allocs/op counts both sides. Compare the
// conc=1 rows with BenchmarkRawTLSPingPong, the floor: one request in
// flight on a crypto/tls connection with a goroutine per side.

var benchSizes = []int{64, 1 << 10, 64 << 10}

func BenchmarkUnaryEcho(b *testing.B) {
	for _, mode := range []struct {
		name string
		mode Mode
	}{{"pool", ModePool}, {"inline", ModeInline}} {
		for _, size := range benchSizes {
			for _, conc := range []int{1, 16, 256} {
				b.Run(fmt.Sprintf("handler=%s/size=%d/conc=%d", mode.name, size, conc), func(b *testing.B) {
					benchEcho(b, mode.mode, size, conc)
				})
			}
		}
	}
}

func benchEcho(b *testing.B, mode Mode, size, conc int) {
	r := newTestRouter()
	m := r.handle("echo", echoRoute(mode))
	srv := startServer(b, r, nil)
	c := dialTest(b, newClientEngine(b), srv.addr(), nil)
	req := make([]byte, size)
	// Warm up pools and TLS.
	for range 100 {
		if _, err := c.Call(context.Background(), m, req); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(2 * size))
	b.ReportAllocs()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				resp, err := c.Call(context.Background(), m, req)
				if err != nil || len(resp) != size {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkRawTLSPingPong is the floor for one caller: a length-prefixed
// echo over crypto/tls on std net, one request in flight.
func BenchmarkRawTLSPingPong(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerTLS(testCert(b)))
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				defer nc.Close()
				buf := make([]byte, 4+size)
				for {
					if _, err := io.ReadFull(nc, buf); err != nil {
						return
					}
					if _, err := nc.Write(buf); err != nil {
						return
					}
				}
			}()
			nc, err := tls.Dial("tcp", ln.Addr().String(), ClientTLS("", nil))
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			req := make([]byte, 4+size)
			binary.BigEndian.PutUint32(req, uint32(size))
			resp := make([]byte, 4+size)
			b.SetBytes(int64(2 * size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := nc.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(nc, resp); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}

// BenchmarkRawGnetPingPong is the floor of the event-loop design for one
// caller: a bare gnet echo server (plaintext, no hawser) and a std net
// client, one request in flight. Compare it with BenchmarkRawTLSPingPong:
// the difference is the cost of waking the loop thread, which Go's
// netpoller avoids by running both goroutines of a ping-pong on one thread.
func BenchmarkRawGnetPingPong(b *testing.B) {
	cli, err := gnet.NewClient(&gnetEcho{}, gnet.WithMulticore(true), gnet.WithLogger(quietLogger{}))
	if err != nil {
		b.Fatal(err)
	}
	if err := cli.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cli.Stop() }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = cli.Enroll(nc)
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	buf := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := nc.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(nc, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

type gnetEcho struct{ gnet.BuiltinEventEngine }

func (*gnetEcho) OnTraffic(c gnet.Conn) gnet.Action {
	b, _ := c.Next(-1)
	_, _ = c.Write(b)
	return gnet.None
}

// BenchmarkStream: one server-push stream over TLS; one op is one item
// received. Reports items/s; allocs/op counts both sides.
func BenchmarkStream(b *testing.B) {
	for _, size := range []int{64, 16 << 10} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			r := newTestRouter()
			m := r.handle("items", &Route{Stream: func(ctx context.Context, _ *Request, s *ServerStream) error {
				item := make([]byte, size)
				for ctx.Err() == nil {
					if err := s.Send(item); err != nil {
						return err
					}
				}
				return nil
			}})
			srv := startServer(b, r, nil)
			c := dialTest(b, newClientEngine(b), srv.addr(), nil)
			s, err := c.OpenStream(context.Background(), m, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := s.Recv(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
		})
	}
}
