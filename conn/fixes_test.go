package conn

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
)

// The dialer keeps to the acceptor's MaxStreams: a stream beyond it waits
// for a free slot instead of being refused.
func TestDialerWaitsForStreamSlot(t *testing.T) {
	r := newTestRouter()
	m := r.handle("forever", &Route{Stream: func(ctx context.Context, _ *Request, s *ServerStream) error {
		<-ctx.Done()
		return ctx.Err()
	}})
	srv := startServer(t, r, func(c *Config) { c.MaxStreams = 2 })
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	s1, err := c.OpenStream(context.Background(), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.OpenStream(context.Background(), m, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.OpenStream(ctx, m, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third stream: got %v, want it to wait (and time out)", err)
	}
	_ = s1.Close()
	s3, err := c.OpenStream(context.Background(), m, nil)
	if err != nil {
		t.Fatalf("stream after a slot freed: %v", err)
	}
	_ = s3.Close()
}

type zeroCodeErr struct{}

func (zeroCodeErr) Error() string       { return "claims code 0" }
func (zeroCodeErr) RPCCode() codec.Code { return codec.CodeOK }

// An error that maps to code 0 still travels as an error (Unknown) and
// does not break the connection.
func TestZeroCodeErrorSentAsUnknown(t *testing.T) {
	r := newTestRouter()
	m := r.handle("zero", &Route{Unary: func(context.Context, *Request) ([]byte, error) { return nil, zeroCodeErr{} }})
	echo := r.handle("echo", echoRoute(ModeInline))
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	_, err := c.Call(context.Background(), m, nil)
	var re *hawser.RemoteError
	if !errors.As(err, &re) || re.Code != codec.CodeUnknown {
		t.Fatalf("got %v", err)
	}
	if _, err := c.Call(context.Background(), echo, nil); err != nil {
		t.Fatalf("connection broken: %v", err)
	}
}

// A dialer draining after a GOAWAY closes when its last call is cancelled,
// not only when one is answered.
func TestDrainClosesAfterCancel(t *testing.T) {
	r := newTestRouter()
	block := r.handle("block", &Route{Unary: func(ctx context.Context, _ *Request) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, block, nil)
		done <- err
	}()
	eventually(t, "the call pending", func() bool { return c.InFlight() >= 1 })
	sc := <-srv.accept
	eventually(t, "the call at the server", func() bool { return sc.InFlight() >= 1 })
	go func() { _ = sc.Shutdown(context.Background()) }()
	eventually(t, "the client draining", c.Draining)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("draining dialer did not close after its last call was cancelled")
	}
}

// A single-frame message above the receiver's max message size is refused.
func TestSingleFrameOverMaxMessage(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModePool))
	srv := startServer(t, r, func(c *Config) { c.MaxMessageSize = 16 << 10 })
	p := dialRaw(t, srv.addr())
	body := append(codec.AppendCallPrefix(nil, echo, nil), make([]byte, 20<<10)...)
	p.write(t, codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindCall, ID: 1}, Body: body}))
	frames, err := p.readFrames()
	if isTimeout(err) {
		t.Fatal("not closed")
	}
	if code, ok := goAwayCode(frames); !ok || code != codec.CodeMessageTooLarge {
		t.Fatalf("frames %v", frames)
	}
}
