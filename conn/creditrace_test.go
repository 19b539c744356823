package conn

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser/codec"
)

// A CREDIT that arrives while its stream's handler returns must not touch
// the serverCall that finish recycles: onCredit used to look the call up
// under c.mu and grant after releasing it, and crashed on the zeroed call
// (found by fuzz.FuzzServerConn).
func TestCreditWhileStreamEnds(t *testing.T) {
	r := newTestRouter()
	items := r.handle("items", &Route{Stream: func(_ context.Context, _ *Request, s *ServerStream) error {
		for range 16 {
			if err := s.Send(make([]byte, 512)); err != nil {
				return err
			}
		}
		return nil
	}})
	srv := startServer(t, r, nil)
	nc, err := net.Dial("tcp", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cfg := clientConfig()
	cfg.StreamWindow = codec.MinStreamWindow // 16 items of 528 need CREDIT
	rw, err := DialRaw(context.Background(), nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	var buf []byte
	tmp := make([]byte, 16<<10)
	for i := range 300 {
		id := uint32(2*i + 1)
		call := codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindCall, Flags: codec.FlagStream, ID: id}, Body: codec.AppendCallPrefix(nil, items, nil)})
		if _, err := rw.Write(call); err != nil {
			t.Fatal(err)
		}
		for ended := false; !ended; {
			f, n, err := codec.Parse(buf, codec.DefaultMaxFrameSize)
			if errors.Is(err, codec.ErrNeedMore) {
				k, err := rw.Read(tmp)
				if err != nil {
					t.Fatalf("stream %d: %v (server recorded %v)", id, err, srv.errors())
				}
				buf = append(buf, tmp[:k]...)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			switch f.Kind {
			case codec.KindStreamItem, codec.KindContinuation:
				// Return each item's cost at once, as the window allows.
				credit := codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindCredit, ID: f.ID, Arg: uint32(len(f.Body) + codec.HeaderSize)}})
				if _, err := rw.Write(credit); err != nil {
					t.Fatal(err)
				}
			case codec.KindStreamEnd:
				ended = true
			default:
				t.Fatalf("stream %d: unexpected %v code %v", id, f.Kind, f.Code)
			}
			buf = buf[n:]
		}
	}
}
