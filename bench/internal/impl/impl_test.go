package impl

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser/internal/certgen"
)

// Every implementation echoes over TLS and, if it has streams, pushes items.
func TestEveryImplementation(t *testing.T) {
	pair, err := certgen.SelfSigned("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			im, _ := Get(name)
			srv, err := im.Serve(ServerConfig{Addr: "127.0.0.1:0", Cert: pair.Cert, ClusterKey: key})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			c, err := im.Dial(ClientConfig{Addr: srv.Addr(), Conns: 2, Conc: 2, ClusterKey: key})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, size := range []int{0, 64, 70000} {
				req := bytes.Repeat([]byte{7}, size)
				resp, err := c.Unary(context.Background(), req)
				if err != nil || !bytes.Equal(resp, req) {
					t.Fatalf("size %d: %v", size, err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			n := 0
			err = c.Stream(ctx, 64, func(item []byte) {
				if len(item) != 64 || binary.BigEndian.Uint64(item) == 0 {
					t.Errorf("bad item %x", item)
				}
				n++
			})
			if !im.Streams {
				if !errors.Is(err, ErrNoStreams) {
					t.Fatalf("stream: %v", err)
				}
				return
			}
			if err != nil || n == 0 {
				t.Fatalf("stream: %d items, %v", n, err)
			}
		})
	}
}
