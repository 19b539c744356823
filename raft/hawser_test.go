package raft

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/hawser-rpc/hawser/conn"
)

// Behaviour of hawser's transport beyond the conformance suite: heartbeats
// ahead of bulk data, shutdown, and snapshot streams that fail.

func heartbeatArgs() *hraft.AppendEntriesRequest {
	return &hraft.AppendEntriesRequest{
		RPCHeader: hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersionMax, ID: []byte("l"), Addr: []byte("leader")},
		Term:      3,
	}
}

func bigAppend(entries, size int) *hraft.AppendEntriesRequest {
	a := &hraft.AppendEntriesRequest{
		RPCHeader: hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersionMax, ID: []byte("l"), Addr: []byte("leader")},
		Term:      3, PrevLogEntry: 1, PrevLogTerm: 1, LeaderCommitIndex: 1,
	}
	data := make([]byte, size)
	for i := 0; i < entries; i++ {
		a.Entries = append(a.Entries, &hraft.Log{Index: uint64(i + 2), Term: 3, Type: hraft.LogCommand, Data: data})
	}
	return a
}

// answerAll answers every RPC on a's consumer (snapshots read to the end)
// until the test ends; onRPC, if set, sees each first.
func answerAll(t *testing.T, a *Transport, onRPC func(rpc hraft.RPC) error) {
	t.Helper()
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		for {
			select {
			case rpc := <-a.Consumer():
				var err error
				if onRPC != nil {
					err = onRPC(rpc)
				}
				switch cmd := rpc.Command.(type) {
				case *hraft.AppendEntriesRequest:
					rpc.Respond(&hraft.AppendEntriesResponse{Term: cmd.Term, LastLog: cmd.PrevLogEntry + uint64(len(cmd.Entries)), Success: err == nil}, nil)
				case *hraft.InstallSnapshotRequest:
					if err == nil {
						var n int64
						n, err = io.Copy(io.Discard, rpc.Reader)
						if err == nil && n != cmd.Size {
							err = errors.New("short snapshot")
						}
					}
					rpc.Respond(&hraft.InstallSnapshotResponse{Term: cmd.Term, Success: err == nil}, err)
				default:
					rpc.Respond(nil, errors.New("unexpected"))
				}
			case <-stop:
				return
			}
		}
	}()
}

// While a follower's raft sits on an AppendEntries (its consumer does not
// take it), heartbeats to it are still answered by its heartbeat handler:
// they do not queue behind the ordered appends.
func TestHeartbeatNotBehindBlockedAppend(t *testing.T) {
	noLeaks(t)
	f, l := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	var beats atomic.Int64
	f.tr.SetHeartbeatHandler(func(rpc hraft.RPC) {
		beats.Add(1)
		rpc.Respond(&hraft.AppendEntriesResponse{Term: 3, Success: true}, nil)
	})
	appended := make(chan error, 1)
	go func() {
		appended <- l.tr.AppendEntries("f", f.addr, bigAppend(4, 1024), new(hraft.AppendEntriesResponse))
	}()
	// The follower's raft takes the append and sits on it.
	var held hraft.RPC
	select {
	case held = <-f.tr.Consumer():
	case <-time.After(10 * time.Second):
		t.Fatal("the append did not arrive")
	}
	for i := 0; i < 20; i++ {
		var out hraft.AppendEntriesResponse
		if err := l.tr.AppendEntries("f", f.addr, heartbeatArgs(), &out); err != nil {
			t.Fatalf("heartbeat %d: %v", i, err)
		}
	}
	if beats.Load() != 20 {
		t.Fatalf("%d heartbeats reached the handler, want 20", beats.Load())
	}
	held.Respond(&hraft.AppendEntriesResponse{Term: 3, Success: true}, nil)
	if err := <-appended; err != nil {
		t.Fatalf("the held append: %v", err)
	}
}

// A heartbeat arriving after Close is refused and never reaches raft
// (hashicorp/raft#717); calls after Close fail with ErrTransportShutdown.
func TestHeartbeatAfterCloseRefused(t *testing.T) {
	noLeaks(t)
	f, l := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	var beats atomic.Int64
	f.tr.SetHeartbeatHandler(func(rpc hraft.RPC) {
		beats.Add(1)
		rpc.Respond(&hraft.AppendEntriesResponse{Term: 3, Success: true}, nil)
	})
	if err := l.tr.AppendEntries("f", f.addr, heartbeatArgs(), new(hraft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	_ = f.tr.Close()
	err := l.tr.AppendEntries("f", f.addr, heartbeatArgs(), new(hraft.AppendEntriesResponse))
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != CodeShutdown || !errors.Is(err, hraft.ErrTransportShutdown) {
		t.Fatalf("heartbeat after Close: got %v, want CodeShutdown", err)
	}
	if beats.Load() != 1 {
		t.Fatalf("the handler saw %d heartbeats, want 1 (none after Close)", beats.Load())
	}
	if st := f.tr.Stats(); st.Refused != 1 || st.Heartbeats != 1 {
		t.Fatalf("stats %+v, want 1 heartbeat and 1 refused", st)
	}
	if err := f.tr.AppendEntries("l", l.addr, heartbeatArgs(), new(hraft.AppendEntriesResponse)); !errors.Is(err, hraft.ErrTransportShutdown) {
		t.Fatalf("call on a closed transport: %v", err)
	}
	if _, err := f.tr.AppendEntriesPipeline("l", l.addr); !errors.Is(err, hraft.ErrTransportShutdown) {
		t.Fatalf("pipeline on a closed transport: %v", err)
	}
}

// Close of a pipeline whose follower never answers returns promptly, an
// AppendEntries waiting for the window returns ErrPipelineShutdown, and so
// does a later one; the transport's Close is prompt too.
func TestPipelineCloseWithCallsInFlight(t *testing.T) {
	noLeaks(t)
	f, l := newNode(t, nodeOpts{}), newNode(t, nodeOpts{cfg: func(c *Config) { c.MaxPipeline = 2 }})
	p, err := l.tr.AppendEntriesPipeline("f", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := p.AppendEntries(bigAppend(1, 100), new(hraft.AppendEntriesResponse)); err != nil {
			t.Fatal(err)
		}
	}
	blocked := make(chan error, 1)
	go func() {
		_, err := p.AppendEntries(bigAppend(1, 100), new(hraft.AppendEntriesResponse))
		blocked <- err
	}()
	// The follower's raft takes the first and sits on it; the second
	// waits behind it (one leader's appends are served in order).
	select {
	case <-f.tr.Consumer():
	case <-time.After(10 * time.Second):
		t.Fatal("the append did not arrive")
	}
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; !errors.Is(err, hraft.ErrPipelineShutdown) {
		t.Fatalf("AppendEntries waiting for the window: %v, want ErrPipelineShutdown", err)
	}
	if _, err := p.AppendEntries(bigAppend(1, 100), new(hraft.AppendEntriesResponse)); !errors.Is(err, hraft.ErrPipelineShutdown) {
		t.Fatalf("AppendEntries after Close: %v, want ErrPipelineShutdown", err)
	}
	_ = l.tr.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v with calls in flight (Timeout is %v)", d, DefaultTimeout)
	}
}

// A follower that stops answering fails the pipeline's calls within
// Timeout, so raft's pipeline never waits forever (hashicorp/raft#612).
func TestPipelineFollowerSilentTimesOut(t *testing.T) {
	noLeaks(t)
	f, l := newNode(t, nodeOpts{}), newNode(t, nodeOpts{cfg: func(c *Config) { c.Timeout = 300 * time.Millisecond }})
	p, err := l.tr.AppendEntriesPipeline("f", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.AppendEntries(bigAppend(1, 100), new(hraft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	select {
	case fut := <-p.Consumer():
		if fut.Error() == nil {
			t.Fatal("an unanswered append succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the unanswered append never completed")
	}
}

// Heartbeats never time out while a 256 MiB snapshot streams to a
// follower and a pipeline of 1 MiB appends saturates the link to another
// (raft never pipelines to the follower it is sending a snapshot to); the
// heartbeats go to both.
func TestHeartbeatsUnderSnapshotAndPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB")
	}
	noLeaks(t)
	fs, fp, l := newNode(t, nodeOpts{}), newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	for _, f := range []*node{fs, fp} {
		f.tr.SetHeartbeatHandler(func(rpc hraft.RPC) {
			rpc.Respond(&hraft.AppendEntriesResponse{Term: 3, Success: true}, nil)
		})
		answerAll(t, f.tr, nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	const snapSize = 256 << 20
	snapErr := make(chan error, 1)
	go func() { // the snapshot
		defer wg.Done()
		defer cancel()
		args := &hraft.InstallSnapshotRequest{Term: 3, Leader: []byte("leader"), Size: snapSize, SnapshotVersion: 1}
		snapErr <- l.tr.InstallSnapshot("fs", fs.addr, args, new(hraft.InstallSnapshotResponse), io.LimitReader(newNoise(1), snapSize))
	}()
	var appends atomic.Int64
	go func() { // the pipeline
		defer wg.Done()
		p, err := l.tr.AppendEntriesPipeline("fp", fp.addr)
		if err != nil {
			t.Error(err)
			return
		}
		defer p.Close()
		req := bigAppend(16, 64<<10)
		sent := 0
		for ctx.Err() == nil {
			if _, err := p.AppendEntries(req, new(hraft.AppendEntriesResponse)); err != nil {
				t.Error(err)
				return
			}
			sent++
			for done := false; !done; {
				select {
				case fut := <-p.Consumer():
					if err := fut.Error(); err != nil {
						t.Error(err)
						return
					}
					appends.Add(1)
				default:
					done = true
				}
			}
		}
	}()
	var beats int
	var worst time.Duration
	var rtts []time.Duration
	t0 := time.Now()
	for ctx.Err() == nil {
		for _, f := range []*node{fs, fp} {
			start := time.Now()
			if err := l.tr.AppendEntries("f", f.addr, heartbeatArgs(), new(hraft.AppendEntriesResponse)); err != nil {
				t.Errorf("heartbeat %d to %s at %v failed under load after %v: %v", beats, f.addr, time.Since(t0), time.Since(start), err)
			}
			d := time.Since(start)
			rtts = append(rtts, d)
			worst = max(worst, d)
			beats++
		}
		time.Sleep(10 * time.Millisecond) // raft's heartbeat interval is HeartbeatTimeout/10
	}
	wg.Wait()
	if err := <-snapErr; err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	slices.Sort(rtts)
	t.Logf("%d heartbeats: p50 %v, p99 %v, slowest %v (timeout %v); %d pipelined appends of 1 MiB",
		beats, rtts[len(rtts)/2], rtts[len(rtts)*99/100], worst, DefaultHeartbeatTimeout, appends.Load())
}

// noise is a fast reader of incompressible bytes (crypto/rand is too slow
// for 256 MiB under the race detector).
type noise struct{ r *mrand.ChaCha8 }

func newNoise(seed byte) noise { return noise{mrand.NewChaCha8([32]byte{seed})} }

func (n noise) Read(p []byte) (int, error) { return n.r.Read(p) }

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// snapshotArgs is an InstallSnapshot of size bytes.
func snapshotArgs(size int64) *hraft.InstallSnapshotRequest {
	return &hraft.InstallSnapshotRequest{
		RPCHeader: hraft.RPCHeader{ProtocolVersion: 3, ID: []byte("l"), Addr: []byte("leader")},
		Term:      3, Leader: []byte("leader"), LastLogIndex: 10, LastLogTerm: 3, Size: size, SnapshotVersion: 1,
	}
}

// readerResult is what the follower's raft got from the snapshot Reader.
type readerResult struct {
	n   int64
	err error
}

// consumeSnapshot reads one InstallSnapshot on tr's consumer, slowly if
// pace is set, and reports what the Reader gave.
func consumeSnapshot(t *testing.T, tr *Transport, pace func(read int64)) <-chan readerResult {
	t.Helper()
	out := make(chan readerResult, 1)
	go func() {
		select {
		case rpc := <-tr.Consumer():
			var n int64
			buf := make([]byte, 32<<10)
			var err error
			for {
				var k int
				k, err = rpc.Reader.Read(buf)
				n += int64(k)
				if err != nil {
					break
				}
				if pace != nil {
					pace(n)
				}
			}
			if err == io.EOF {
				err = nil
			}
			rpc.Respond(&hraft.InstallSnapshotResponse{Term: 3, Success: err == nil}, err)
			out <- readerResult{n, err}
		case <-time.After(10 * time.Second):
			out <- readerResult{-1, errors.New("no InstallSnapshot came")}
		}
	}()
	return out
}

// A source that ends before Size fails the install on both sides.
func TestSnapshotSourceTruncated(t *testing.T) {
	noLeaks(t)
	f, l := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	got := consumeSnapshot(t, f.tr, nil)
	err := l.tr.InstallSnapshot("f", f.addr, snapshotArgs(1<<20), new(hraft.InstallSnapshotResponse), bytes.NewReader(make([]byte, 300<<10)))
	if !errors.Is(err, ErrSnapshotTruncated) {
		t.Fatalf("leader: %v, want ErrSnapshotTruncated", err)
	}
	r := <-got
	if !errors.Is(r.err, ErrSnapshotTruncated) || r.n > 300<<10 {
		t.Fatalf("follower's reader: %d bytes, %v; want ErrSnapshotTruncated", r.n, r.err)
	}
}

// The connection dying mid-snapshot gives the follower's reader an error,
// never a short snapshot reported as complete.
func TestSnapshotConnectionKilled(t *testing.T) {
	noLeaks(t)
	f, l := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	half := make(chan struct{})
	var once sync.Once
	got := consumeSnapshot(t, f.tr, func(n int64) {
		if n >= 2<<20 {
			once.Do(func() { close(half) })
		}
	})
	go func() {
		<-half
		l.pool.MarkDead(string(f.addr)) // closes the leader's connections to f
	}()
	err := l.tr.InstallSnapshot("f", f.addr, snapshotArgs(64<<20), new(hraft.InstallSnapshotResponse), io.LimitReader(zeros{}, 64<<20))
	if err == nil {
		t.Fatal("the leader's install succeeded over a killed connection")
	}
	r := <-got
	if !errors.Is(r.err, ErrSnapshotTruncated) || r.n >= 64<<20 {
		t.Fatalf("follower's reader: %d bytes, %v; want ErrSnapshotTruncated", r.n, r.err)
	}
}

// openSession opens a snapshot session by hand on a connection to f.
func openSession(t *testing.T, l, f *node, size int64) (*conn.Conn, uint64) {
	t.Helper()
	c, err := l.pool.Peer(string(f.addr)).Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Call(context.Background(), mSnapOpen, appendInstallSnapshotRequest(nil, snapshotArgs(size)))
	if err != nil {
		t.Fatal(err)
	}
	body, err := decodeReply(b)
	if err != nil {
		t.Fatal(err)
	}
	id, err := decodeSnapSession(body)
	if err != nil {
		t.Fatal(err)
	}
	return c, id
}

// Bytes beyond Size are discarded and reported; the Reader yields exactly
// Size bytes, then EOF.
func TestSnapshotExcessDiscarded(t *testing.T) {
	noLeaks(t)
	f, l := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	got := consumeSnapshot(t, f.tr, nil)
	c, id := openSession(t, l, f, 1000)
	b, err := c.Call(context.Background(), mSnapChunk, appendSnapChunk(nil, &snapChunk{Session: id, Data: make([]byte, 1500)}))
	if err != nil {
		t.Fatal(err)
	}
	var re *RemoteError
	if _, err := decodeReply(b); !errors.As(err, &re) || re.Code != CodeSnapshot {
		t.Fatalf("chunk with excess: %v, want CodeSnapshot", err)
	}
	r := <-got
	if r.err != nil || r.n != 1000 {
		t.Fatalf("reader: %d bytes, %v; want exactly 1000 then EOF", r.n, r.err)
	}
	if st := f.tr.Stats(); st.ExcessBytes != 500 {
		t.Fatalf("ExcessBytes %d, want 500", st.ExcessBytes)
	}
	b, err = c.Call(context.Background(), mSnapDone, appendSnapDone(nil, &snapDone{Session: id, Size: 1000}))
	if err != nil {
		t.Fatal(err)
	}
	body, err := decodeReply(b)
	if err != nil {
		t.Fatal(err)
	}
	var resp hraft.InstallSnapshotResponse
	if err := decodeInstallSnapshotResponse(body, &resp); err != nil || !resp.Success {
		t.Fatalf("Done: %+v, %v", resp, err)
	}
}

// A leader that stops sending chunks stalls the follower's reader for
// Timeout, then the reader fails with ErrSnapshotStalled; a chunk going
// back fails the stream.
func TestSnapshotStalledAndOutOfOrder(t *testing.T) {
	noLeaks(t)
	f := newNode(t, nodeOpts{cfg: func(c *Config) { c.Timeout = 300 * time.Millisecond }})
	l := newNode(t, nodeOpts{})
	got := consumeSnapshot(t, f.tr, nil)
	c, id := openSession(t, l, f, 1<<20)
	if _, err := c.Call(context.Background(), mSnapChunk, appendSnapChunk(nil, &snapChunk{Session: id, Data: make([]byte, 1000)})); err != nil {
		t.Fatal(err)
	}
	if r := <-got; !errors.Is(r.err, ErrSnapshotStalled) || r.n != 1000 {
		t.Fatalf("reader: %d bytes, %v; want ErrSnapshotStalled after 1000", r.n, r.err)
	}

	// A chunk that goes back (a duplicate) fails the stream at once; one
	// that jumps ahead waits for the gap to fill (chunks run on the worker
	// pool and may overtake each other), and here stalls.
	got = consumeSnapshot(t, f.tr, nil)
	c, id = openSession(t, l, f, 1<<20)
	if _, err := c.Call(context.Background(), mSnapChunk, appendSnapChunk(nil, &snapChunk{Session: id, Data: make([]byte, 1000)})); err != nil {
		t.Fatal(err)
	}
	b, err := c.Call(context.Background(), mSnapChunk, appendSnapChunk(nil, &snapChunk{Session: id, Offset: 500, Data: make([]byte, 1000)}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeReply(b); err == nil {
		t.Fatal("a chunk going back was accepted")
	}
	if r := <-got; !errors.Is(r.err, ErrSnapshotTruncated) {
		t.Fatalf("reader after a chunk going back: %d bytes, %v", r.n, r.err)
	}
}

// A snapshot's memory on the follower is bounded by the window, not its
// size: the bytes queued for a slow reader never pass SnapshotWindow.
func TestSnapshotWindowBoundsFollowerMemory(t *testing.T) {
	noLeaks(t)
	f, l := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	var maxQueued atomic.Int64
	sample := func() {
		f.tr.mu.Lock()
		for _, s := range f.tr.sessions {
			s.mu.Lock()
			if q := int64(s.qLen); q > maxQueued.Load() {
				maxQueued.Store(q)
			}
			s.mu.Unlock()
		}
		f.tr.mu.Unlock()
	}
	const size = 16 << 20
	var reads int
	got := consumeSnapshot(t, f.tr, func(int64) {
		if reads++; reads%8 == 0 {
			sample()
			time.Sleep(time.Millisecond) // a slow disk
		}
	})
	data := make([]byte, size)
	_, _ = rand.Read(data)
	if err := l.tr.InstallSnapshot("f", f.addr, snapshotArgs(size), new(hraft.InstallSnapshotResponse), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.err != nil || r.n != size {
		t.Fatalf("reader: %d bytes, %v", r.n, r.err)
	}
	if m := maxQueued.Load(); m == 0 || m > DefaultSnapshotWindow {
		t.Fatalf("at most %d bytes queued, want (0, %d]", m, DefaultSnapshotWindow)
	}
	t.Logf("at most %d KiB queued on the follower for a %d MiB snapshot", maxQueued.Load()>>10, size>>20)
}

type mapProvider map[hraft.ServerID]hraft.ServerAddress

func (m mapProvider) ServerAddr(id hraft.ServerID) (hraft.ServerAddress, error) {
	if a, ok := m[id]; ok {
		return a, nil
	}
	return "", errors.New("unknown server")
}

// The AddressProvider decides where a server ID is dialed; raft's address
// is the fallback when it fails.
func TestAddressProvider(t *testing.T) {
	noLeaks(t)
	f := newNode(t, nodeOpts{})
	l := newNode(t, nodeOpts{cfg: func(c *Config) { c.AddressProvider = mapProvider{"f": f.addr} }})
	f.tr.SetHeartbeatHandler(func(rpc hraft.RPC) {
		rpc.Respond(&hraft.AppendEntriesResponse{Term: 3, Success: true}, nil)
	})
	// raft's address is wrong; the provider's is right.
	if err := l.tr.AppendEntries("f", "127.0.0.1:1", heartbeatArgs(), new(hraft.AppendEntriesResponse)); err != nil {
		t.Fatalf("through the provider: %v", err)
	}
	// An ID the provider does not know falls back to raft's address.
	if err := l.tr.AppendEntries("other", f.addr, heartbeatArgs(), new(hraft.AppendEntriesResponse)); err != nil {
		t.Fatalf("falling back to raft's address: %v", err)
	}
}
