package conn

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/hawser-rpc/hawser"
)

// Mixed traffic on one connection: concurrent calls of random sizes (some
// fragmented), random priorities and handler modes, beside streams; every
// reply and item is checked byte for byte. It guards the write path's
// invariants: frames are never split or interleaved, whatever the mix.
func TestMixedTrafficStress(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprint("compress=", compress), func(t *testing.T) {
			r := newTestRouter()
			modes := []uint64{
				r.handle("pool", echoRoute(ModePool)),
				r.handle("inline", echoRoute(ModeInline)),
				r.handle("ordered", echoRoute(ModeOrdered)),
			}
			count := r.handle("count", countRoute(nil))
			srv := startServer(t, r, func(c *Config) { c.Compression = compress; c.WriteHighWater = 256 << 10 })
			c := dialTest(t, newClientEngine(t), srv.addr(), func(c *Config) { c.Compression = compress; c.StreamWindow = 32 << 10 })
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for g := range 24 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(g), 7))
					for i := range 60 {
						size := rng.IntN(4 << 10)
						if rng.IntN(8) == 0 {
							size = rng.IntN(300 << 10) // several fragments
						}
						req := make([]byte, size)
						for j := range req {
							req[j] = byte(j*31 + i + g) // compressible, position-dependent
						}
						if size >= 8 {
							binary.BigEndian.PutUint64(req, rng.Uint64())
						}
						var opts []hawser.CallOption
						if rng.IntN(3) == 0 {
							opts = append(opts, hawser.Urgent())
						}
						resp, err := c.Call(context.Background(), modes[rng.IntN(len(modes))], req, opts...)
						if err != nil {
							errs <- err
							return
						}
						if !bytes.Equal(resp, req) {
							errs <- fmt.Errorf("goroutine %d call %d: reply of %d bytes differs from request of %d", g, i, len(resp), len(req))
							return
						}
					}
				}()
			}
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s, err := c.OpenStream(context.Background(), count, countReq(3000, 700))
					if err != nil {
						errs <- err
						return
					}
					errs <- drain(s, 3000, 700)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
