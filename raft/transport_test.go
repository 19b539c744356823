package raft

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// The conformance suite: every case runs against hawser's Transport and
// raft's InmemTransport, as hashicorp/raft's transport_test.go loops over
// its transports (the cases are written anew from its StartStop,
// AppendEntries, AppendEntriesPipeline, RequestVote, InstallSnapshot and
// EncodeDecode, and net_transport_test.go's heartbeat fast path, plus
// PreVote, TimeoutNow and errors).

// suiteTransport is what every implementation under the suite offers.
type suiteTransport interface {
	hraft.Transport
	hraft.WithClose
	hraft.WithPreVote
}

type kind struct {
	name string
	// fastPath: heartbeats reach the handler set by SetHeartbeatHandler
	// (InmemTransport ignores it and sends them to the consumer).
	fastPath bool
	// pair returns two transports that reach each other; a serves, b
	// calls. Both are closed by t's cleanup.
	pair func(t *testing.T) (a, b suiteTransport)
}

var kinds = []kind{
	{name: "hawser", fastPath: true, pair: func(t *testing.T) (suiteTransport, suiteTransport) {
		return newNode(t, nodeOpts{}).tr, newNode(t, nodeOpts{}).tr
	}},
	{name: "inmem", pair: func(t *testing.T) (suiteTransport, suiteTransport) {
		_, a := hraft.NewInmemTransport("")
		_, b := hraft.NewInmemTransport("")
		a.Connect(b.LocalAddr(), b)
		b.Connect(a.LocalAddr(), a)
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		return a, b
	}},
}

func forEachKind(t *testing.T, f func(t *testing.T, k kind)) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			noLeaks(t)
			f(t, k)
		})
	}
}

// respond serves n RPCs from ch with f's answers, on a goroutine the test
// waits for; an RPC that does not come within 10 s fails the test.
func respond(t *testing.T, ch <-chan hraft.RPC, n int, f func(rpc hraft.RPC) (any, error)) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			select {
			case rpc := <-ch:
				resp, err := f(rpc)
				rpc.Respond(resp, err)
			case <-time.After(10 * time.Second):
				t.Errorf("RPC %d of %d did not arrive", i+1, n)
				return
			}
		}
	}()
}

func sampleAppend() hraft.AppendEntriesRequest {
	return hraft.AppendEntriesRequest{
		RPCHeader:    hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersionMax, ID: []byte("leader-1"), Addr: []byte("cartman")},
		Term:         10,
		PrevLogEntry: 100,
		PrevLogTerm:  4,
		Entries: []*hraft.Log{
			{Index: 101, Term: 4, Type: hraft.LogNoop},
			{Index: 102, Term: 4, Type: hraft.LogCommand, Data: []byte("set x=1"), Extensions: []byte("ext")},
			{Index: 103, Term: 4, Type: hraft.LogConfiguration, Data: []byte{1, 2, 3}},
		},
		LeaderCommitIndex: 90,
	}
}

func TestTransportStartStop(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		a, _ := k.pair(t)
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func TestTransportAppendEntries(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		a, b := k.pair(t)
		args := sampleAppend()
		want := hraft.AppendEntriesResponse{RPCHeader: hraft.RPCHeader{ID: []byte("f")}, Term: 4, LastLog: 90, Success: true, NoRetryBackoff: true}
		respond(t, a.Consumer(), 1, func(rpc hraft.RPC) (any, error) {
			if got := rpc.Command.(*hraft.AppendEntriesRequest); !reflect.DeepEqual(got, &args) {
				t.Errorf("request: got %#v, want %#v", got, &args)
			}
			return &want, nil
		})
		var out hraft.AppendEntriesResponse
		if err := b.AppendEntries("id1", a.LocalAddr(), &args, &out); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(out, want) {
			t.Fatalf("response: got %#v, want %#v", out, want)
		}
	})
}

func TestTransportAppendEntriesPipeline(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		a, b := k.pair(t)
		const n = 10
		respond(t, a.Consumer(), n, func(rpc hraft.RPC) (any, error) {
			req := rpc.Command.(*hraft.AppendEntriesRequest)
			// The response names the request, to check the order.
			return &hraft.AppendEntriesResponse{Term: req.Term, LastLog: req.PrevLogEntry, Success: true}, nil
		})
		p, err := b.AppendEntriesPipeline("id1", a.LocalAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = p.Close() }()
		got := make(chan hraft.AppendFuture, n)
		go func() {
			for i := 0; i < n; i++ {
				select {
				case f := <-p.Consumer():
					got <- f
				case <-time.After(10 * time.Second):
					close(got)
					return
				}
			}
		}()
		for i := 0; i < n; i++ {
			args := sampleAppend()
			args.PrevLogEntry = uint64(1000 + i)
			if _, err := p.AppendEntries(&args, new(hraft.AppendEntriesResponse)); err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
		for i := 0; i < n; i++ {
			f, ok := <-got
			if !ok {
				t.Fatalf("response %d did not come", i)
			}
			if err := f.Error(); err != nil {
				t.Fatalf("response %d: %v", i, err)
			}
			if r := f.Response(); r.LastLog != uint64(1000+i) || !r.Success || f.Request().PrevLogEntry != r.LastLog {
				t.Fatalf("response %d out of order or wrong: %#v", i, r)
			}
		}
	})
}

func TestTransportRequestVote(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		a, b := k.pair(t)
		args := hraft.RequestVoteRequest{
			RPCHeader: hraft.RPCHeader{ProtocolVersion: 3, ID: []byte("c"), Addr: []byte("butters")},
			Term:      20, Candidate: []byte("butters"), LastLogIndex: 100, LastLogTerm: 19, //nolint:staticcheck // every field round-trips
			LeadershipTransfer: true,
		}
		want := hraft.RequestVoteResponse{Term: 100, Peers: []byte("p"), Granted: true}
		respond(t, a.Consumer(), 1, func(rpc hraft.RPC) (any, error) {
			if got := rpc.Command.(*hraft.RequestVoteRequest); !reflect.DeepEqual(got, &args) {
				t.Errorf("request: got %#v, want %#v", got, &args)
			}
			return &want, nil
		})
		var out hraft.RequestVoteResponse
		if err := b.RequestVote("id1", a.LocalAddr(), &args, &out); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(out, want) {
			t.Fatalf("response: got %#v, want %#v", out, want)
		}
	})
}

func TestTransportRequestPreVote(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		a, b := k.pair(t)
		args := hraft.RequestPreVoteRequest{
			RPCHeader: hraft.RPCHeader{ProtocolVersion: 3, ID: []byte("c"), Addr: []byte("butters")},
			Term:      21, LastLogIndex: 100, LastLogTerm: 19,
		}
		want := hraft.RequestPreVoteResponse{Term: 20, Granted: true}
		respond(t, a.Consumer(), 1, func(rpc hraft.RPC) (any, error) {
			if got := rpc.Command.(*hraft.RequestPreVoteRequest); !reflect.DeepEqual(got, &args) {
				t.Errorf("request: got %#v, want %#v", got, &args)
			}
			return &want, nil
		})
		var out hraft.RequestPreVoteResponse
		if err := b.RequestPreVote("id1", a.LocalAddr(), &args, &out); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(out, want) {
			t.Fatalf("response: got %#v, want %#v", out, want)
		}
	})
}

func TestTransportTimeoutNow(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		a, b := k.pair(t)
		args := hraft.TimeoutNowRequest{RPCHeader: hraft.RPCHeader{ProtocolVersion: 3, ID: []byte("l"), Addr: []byte("kenny")}}
		want := hraft.TimeoutNowResponse{RPCHeader: hraft.RPCHeader{ProtocolVersion: 3, ID: []byte("f")}}
		respond(t, a.Consumer(), 1, func(rpc hraft.RPC) (any, error) {
			if got := rpc.Command.(*hraft.TimeoutNowRequest); !reflect.DeepEqual(got, &args) {
				t.Errorf("request: got %#v, want %#v", got, &args)
			}
			return &want, nil
		})
		var out hraft.TimeoutNowResponse
		if err := b.TimeoutNow("id1", a.LocalAddr(), &args, &out); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(out, want) {
			t.Fatalf("response: got %#v, want %#v", out, want)
		}
	})
}

// raft's error answer reaches the caller as an error with its text.
func TestTransportErrorAnswer(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		a, b := k.pair(t)
		respond(t, a.Consumer(), 1, func(hraft.RPC) (any, error) {
			return nil, errors.New("log store on fire")
		})
		args := sampleAppend()
		err := b.AppendEntries("id1", a.LocalAddr(), &args, new(hraft.AppendEntriesResponse))
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte("log store on fire")) {
			t.Fatalf("got %v, want raft's error", err)
		}
	})
}

func TestTransportInstallSnapshot(t *testing.T) {
	for _, size := range []int{10, 0, 3<<20 + 17} {
		t.Run(byteSize(size), func(t *testing.T) {
			forEachKind(t, func(t *testing.T, k kind) {
				a, b := k.pair(t)
				data := make([]byte, size)
				_, _ = rand.Read(data)
				args := hraft.InstallSnapshotRequest{
					RPCHeader:       hraft.RPCHeader{ProtocolVersion: 3, ID: []byte("l"), Addr: []byte("kyle")},
					SnapshotVersion: hraft.SnapshotVersionMax,
					Term:            10, Leader: []byte("kyle"), LastLogIndex: 100, LastLogTerm: 9,
					Peers: []byte("blah blah"), Configuration: []byte("conf"), ConfigurationIndex: 77,
					Size: int64(size),
				}
				want := hraft.InstallSnapshotResponse{Term: 10, Success: true}
				respond(t, a.Consumer(), 1, func(rpc hraft.RPC) (any, error) {
					if got := rpc.Command.(*hraft.InstallSnapshotRequest); !reflect.DeepEqual(got, &args) {
						t.Errorf("request: got %#v, want %#v", got, &args)
					}
					got, err := io.ReadAll(rpc.Reader)
					if err != nil {
						t.Errorf("reading the snapshot: %v", err)
					}
					if !bytes.Equal(got, data) {
						t.Errorf("snapshot: got %d bytes, want %d (equal: %v)", len(got), len(data), bytes.Equal(got, data))
					}
					return &want, nil
				})
				var out hraft.InstallSnapshotResponse
				if err := b.InstallSnapshot("id1", a.LocalAddr(), &args, &out, bytes.NewReader(data)); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(out, want) {
					t.Fatalf("response: got %#v, want %#v", out, want)
				}
			})
		})
	}
}

func TestTransportEncodeDecode(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		a, _ := k.pair(t)
		local := a.LocalAddr()
		if dec := a.DecodePeer(a.EncodePeer("aaaa", local)); dec != local {
			t.Fatalf("EncodePeer/DecodePeer: %q became %q", local, dec)
		}
	})
}

// A heartbeat goes to the heartbeat handler where the transport has the
// fast path, and to the consumer otherwise; either way it is answered.
func TestTransportHeartbeatFastPath(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		a, b := k.pair(t)
		args := hraft.AppendEntriesRequest{
			RPCHeader: hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersionMax, Addr: []byte("cartman")},
			Term:      10, Leader: []byte("cartman"), //nolint:staticcheck // raft still sets it
		}
		want := hraft.AppendEntriesResponse{Term: 4, LastLog: 90, Success: true}
		fast := make(chan struct{}, 1)
		a.SetHeartbeatHandler(func(rpc hraft.RPC) {
			if got := rpc.Command.(*hraft.AppendEntriesRequest); !reflect.DeepEqual(got, &args) {
				t.Errorf("request: got %#v, want %#v", got, &args)
			}
			fast <- struct{}{}
			rpc.Respond(&want, nil)
		})
		if !k.fastPath {
			respond(t, a.Consumer(), 1, func(hraft.RPC) (any, error) { return &want, nil })
		}
		var out hraft.AppendEntriesResponse
		if err := b.AppendEntries("id1", a.LocalAddr(), &args, &out); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(out, want) {
			t.Fatalf("response: got %#v, want %#v", out, want)
		}
		if used := len(fast) == 1; used != k.fastPath {
			t.Fatalf("fast path used: %v, want %v", used, k.fastPath)
		}
	})
}

func byteSize(n int) string { return fmt.Sprintf("%dB", n) }
