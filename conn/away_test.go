package conn

import (
	"context"
	"testing"
)

// GoingAway: open while the connection serves; closed by the peer's
// GOAWAY while a call is still pending (asked before or after it came);
// a closed connection without a GOAWAY leaves it open.
func TestGoingAway(t *testing.T) {
	r := newTestRouter()
	release := make(chan struct{})
	slow := r.handle("slow", &Route{Unary: func(ctx context.Context, _ *Request) ([]byte, error) {
		<-release
		return []byte("finished"), nil
	}})
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	early := c.GoingAway()
	select {
	case <-early:
		t.Fatal("GoingAway closed before any GOAWAY")
	default:
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), slow, nil)
		done <- err
	}()
	sc := <-srv.accept
	eventually(t, "the call at the server", func() bool { return sc.InFlight() == 1 })
	shut := make(chan error, 1)
	go func() { shut <- sc.Shutdown(context.Background()) }()
	<-early
	<-c.GoingAway() // asked after the GOAWAY: closed already
	select {
	case <-c.Done():
		t.Fatal("the connection closed with a call pending")
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}

	other := dialTest(t, newClientEngine(t), srv.addr(), nil)
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-other.GoingAway():
		t.Fatal("a local close looks like the peer's GOAWAY")
	default:
	}
}
