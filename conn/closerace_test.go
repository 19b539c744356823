package conn

import (
	"testing"

	"github.com/hawser-rpc/hawser/codec"
)

// A connection that closes (here on a protocol violation) while pool
// handlers return must not touch a serverCall that a handler's finish has
// already recycled: onClose used to cancel a snapshot of inflight after
// releasing c.mu, and crashed on the zeroed call (found by
// fuzz.FuzzServerConn).
func TestCloseWhileHandlersFinish(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModePool))
	srv := startServer(t, r, nil)
	var in []byte
	for id := uint32(1); id < 32; id += 2 {
		in = codec.Append(in, codec.Frame{Header: codec.Header{Kind: codec.KindCall, ID: id}, Body: codec.AppendCallPrefix(nil, echo, nil)})
	}
	in = codec.AppendHeader(in, codec.Header{Kind: codec.KindCall, ID: 99, Length: 1 << 30})
	for range 200 {
		p := dialRaw(t, srv.addr())
		p.write(t, in)
		if _, err := p.readFrames(); isTimeout(err) {
			t.Fatal("server did not close the connection")
		}
		_ = p.nc.Close()
	}
}
