package conn

import (
	"bytes"
	"context"
	"testing"
)

func TestEchoOverTLS(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModePool))
	inline := r.handle("echo.inline", echoRoute(ModeInline))
	ordered := r.handle("echo.ordered", echoRoute(ModeOrdered))
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	if c.PeerNodeID() != "server" || c.Version() != 1 {
		t.Fatalf("peer %q version %d", c.PeerNodeID(), c.Version())
	}
	for _, m := range []uint64{echo, inline, ordered} {
		for _, size := range []int{0, 1, 64, 1 << 10, 64 << 10, 200 << 10, 3 << 20} {
			req := bytes.Repeat([]byte{byte(size)}, size)
			resp, err := c.Call(context.Background(), m, req)
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			if !bytes.Equal(resp, req) {
				t.Fatalf("size %d: reply differs (%d bytes)", size, len(resp))
			}
		}
	}
}
