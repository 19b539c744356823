package raftbench

import (
	"context"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

func TestIsHeartbeat(t *testing.T) {
	hb := hraft.AppendEntriesRequest{RPCHeader: hraft.RPCHeader{Addr: []byte("a")}, Term: 3}
	old := hraft.AppendEntriesRequest{Term: 3, Leader: []byte("a")} //nolint:staticcheck // an older sender's heartbeat
	for _, tc := range []struct {
		name string
		req  hraft.AppendEntriesRequest
		want bool
	}{
		{"heartbeat", hb, true},
		{"heartbeat with Leader only", old, true},
		{"no term", hraft.AppendEntriesRequest{RPCHeader: hb.RPCHeader}, false},
		{"no leader", hraft.AppendEntriesRequest{Term: 3}, false},
		{"prev entry", func() hraft.AppendEntriesRequest { r := hb; r.PrevLogEntry = 1; return r }(), false},
		{"prev term", func() hraft.AppendEntriesRequest { r := hb; r.PrevLogTerm = 1; return r }(), false},
		{"commit", func() hraft.AppendEntriesRequest { r := hb; r.LeaderCommitIndex = 1; return r }(), false},
		{"entries", func() hraft.AppendEntriesRequest { r := hb; r.Entries = []*hraft.Log{{}}; return r }(), false},
	} {
		if got := isHeartbeat(&tc.req); got != tc.want {
			t.Errorf("%s: isHeartbeat = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The wrapper says what the inner transport says about pre-vote, closes it
// once, and passes the heartbeat handler through.
func TestWrap(t *testing.T) {
	_, inmem := hraft.NewInmemTransport("")
	w := wrap(inmem, newHeartbeats())
	if _, ok := w.(hraft.WithPreVote); !ok {
		t.Error("wrapped InmemTransport lacks WithPreVote")
	}
	if _, ok := w.(hraft.WithClose); !ok {
		t.Error("wrapped InmemTransport lacks WithClose")
	}
	type plain struct{ hraft.Transport } // no pre-vote
	if _, ok := wrap(plain{inmem}, newHeartbeats()).(hraft.WithPreVote); ok {
		t.Error("a wrapper of a transport without pre-vote claims it")
	}
	for range 2 {
		if err := w.(hraft.WithClose).Close(); err != nil {
			t.Fatal(err)
		}
	}

	eps, err := newEndpoints("net-tcp", 1)
	if err != nil {
		t.Fatal(err)
	}
	called := make(chan struct{}, 1)
	w = wrap(eps[0].tr, newHeartbeats())
	w.SetHeartbeatHandler(func(rpc hraft.RPC) {
		called <- struct{}{}
		rpc.Respond(&hraft.AppendEntriesResponse{Success: true}, nil)
	})
	other, err := newEndpoints("net-tcp", 1)
	if err != nil {
		t.Fatal(err)
	}
	hb := newHeartbeats()
	hb.recording.Store(true)
	sender := wrap(other[0].tr, hb)
	req := hraft.AppendEntriesRequest{RPCHeader: hraft.RPCHeader{ID: []byte("x"), Addr: []byte(sender.LocalAddr())}, Term: 1}
	var resp hraft.AppendEntriesResponse
	if err := sender.AppendEntries("y", w.LocalAddr(), &req, &resp); err != nil || !resp.Success {
		t.Fatalf("heartbeat: %v, %+v", err, resp)
	}
	select {
	case <-called:
	default:
		t.Fatal("the heartbeat handler was not called")
	}
	if n, _, _, _, _ := hb.summary(); n != 1 {
		t.Fatalf("%d heartbeats recorded, want 1", n)
	}
	if err := closeAll(append(eps, other...)); err != nil {
		t.Fatal(err)
	}
}

func TestRunAndSnapshot(t *testing.T) {
	for _, impl := range Impls() {
		t.Run(impl, func(t *testing.T) {
			r, err := Run(context.Background(), Options{Impl: impl, Size: 100, Conc: 4,
				Warmup: 100 * time.Millisecond, Duration: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", r)
			if r.Ops == 0 || r.P50Us <= 0 || r.CPUNs <= 0 || r.HBCount == 0 {
				t.Errorf("implausible: %+v", r)
			}
			d, err := Snapshot(context.Background(), impl, 4<<20+17)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("snapshot: %v", d)
		})
	}
}
