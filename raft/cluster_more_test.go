package raft

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Clusters on raft's slow and failing paths: a non-voter that can only
// catch up by a 64 MiB snapshot, a follower whose disk stalls, a snapshot
// whose connection dies, a follower that rejects appends.

// blobSize is the FSM blob that makes the snapshots large.
const blobSize = 64 << 20

// snapConfig turns automatic snapshots off (the tests take theirs with
// raft.Snapshot) and keeps a short tail of log after one, so a node that
// joins later cannot catch up from the log.
//
// Its timing is raft's defaults, not raftConfig's: moving 64 MiB around
// under the race detector on a loaded 2-core machine stalls the process
// for more than raftConfig's 200 ms lease at times, and a leader that
// steps down mid-install meets the transport bug that
// TestSnapshotNotBehindWaitingAppend shows.
func snapConfig(c *hraft.Config) {
	d := hraft.DefaultConfig()
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = d.HeartbeatTimeout, d.ElectionTimeout, d.LeaderLeaseTimeout
	c.TrailingLogs = 10
	c.SnapshotThreshold = 1 << 40
	c.SnapshotInterval = time.Hour
}

// snapshotOpts are the options of a cluster whose snapshots are large:
// snapConfig, and a pieceStore per node, wrapped by wrap if it is set.
func snapshotOpts(wrap func(i int, s hraft.SnapshotStore) hraft.SnapshotStore) clusterOpts {
	return clusterOpts{
		raft: snapConfig,
		snaps: func(i int, _ hraft.SnapshotStore) hraft.SnapshotStore {
			var s hraft.SnapshotStore = new(pieceStore)
			if wrap != nil {
				s = wrap(i, s)
			}
			return s
		},
	}
}

// pieceStore is an in-memory SnapshotStore that keeps a snapshot as the
// pieces it was written in. InmemSnapshotStore keeps one bytes.Buffer,
// which copies all it holds in one go when it grows (see piece), and
// FileSnapshotStore costs an fsync and two CRC passes per 64 MiB, slow
// and erratic on a shared machine.
type pieceStore struct {
	mu     sync.Mutex
	latest *pieceSink // guarded by mu: the last snapshot closed
	n      int        // guarded by mu: snapshots created
}

// pieceSink is written by one goroutine; Close publishes it, read-only
// from then on.
type pieceSink struct {
	s      *pieceStore
	meta   hraft.SnapshotMeta
	pieces [][]byte
}

func (s *pieceStore) Create(version hraft.SnapshotVersion, index, term uint64, cfg hraft.Configuration, cfgIndex uint64, _ hraft.Transport) (hraft.SnapshotSink, error) {
	s.mu.Lock()
	s.n++
	id := fmt.Sprintf("%d-%d-%d", term, index, s.n)
	s.mu.Unlock()
	return &pieceSink{s: s, meta: hraft.SnapshotMeta{
		Version: version, ID: id, Index: index, Term: term,
		Configuration: cfg, ConfigurationIndex: cfgIndex,
	}}, nil
}

func (s *pieceStore) List() ([]*hraft.SnapshotMeta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.latest == nil {
		return nil, nil
	}
	m := s.latest.meta
	return []*hraft.SnapshotMeta{&m}, nil
}

func (s *pieceStore) Open(id string) (*hraft.SnapshotMeta, io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.latest == nil || s.latest.meta.ID != id {
		return nil, nil, fmt.Errorf("no snapshot %q", id)
	}
	rs := make([]io.Reader, len(s.latest.pieces))
	for i, p := range s.latest.pieces {
		rs[i] = bytes.NewReader(p)
	}
	m := s.latest.meta
	return &m, io.NopCloser(io.MultiReader(rs...)), nil
}

func (k *pieceSink) Write(p []byte) (int, error) {
	k.pieces = append(k.pieces, bytes.Clone(p))
	k.meta.Size += int64(len(p))
	return len(p), nil
}

func (k *pieceSink) Close() error {
	k.s.mu.Lock()
	k.s.latest = k
	k.s.mu.Unlock()
	return nil
}

func (k *pieceSink) ID() string    { return k.meta.ID }
func (k *pieceSink) Cancel() error { return nil }

// snapshotCluster starts 3 voters with options o whose FSMs carry the same
// blob of blobSize incompressible bytes, applies 500 commands, has the
// leader snapshot and compact its log, and returns the cluster, the leader,
// the commands and the blob's hash.
func snapshotCluster(t *testing.T, o clusterOpts) (*cluster, *rnode, [][]byte, [sha256.Size]byte) {
	t.Helper()
	c := newCluster(t, 3, o)
	blob := make([]byte, blobSize)
	_, _ = mrand.NewChaCha8([32]byte{7}).Read(blob)
	sum := sha256.Sum256(blob)
	for _, n := range c.nodes {
		n.fsm.mu.Lock()
		n.fsm.blob = blob // read-only from here on
		n.fsm.mu.Unlock()
	}
	l := c.leader(10 * time.Second)
	pre := applyN(t, l.raft, "pre", 500, 16)
	if len(pre) != 500 {
		t.Fatalf("%d of 500 applies acknowledged", len(pre))
	}
	if err := l.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	first, err := l.logs.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first <= 1 {
		t.Fatalf("the leader's log starts at %d after its snapshot: not compacted", first)
	}
	t.Logf("leader %s: snapshot taken, log compacted to start at %d", l.id, first)
	return c, l, pre, sum
}

// checkRestores fails t unless f's FSM was restored exactly once, from the
// whole blob.
func checkRestores(t *testing.T, f *rnode, sum [sha256.Size]byte) {
	t.Helper()
	rs := f.fsm.restoreLog()
	for i, r := range rs {
		if r.err != nil || r.size != blobSize || r.sum != sum {
			t.Errorf("%s: Restore %d of %d: blob of %d bytes (want %d), hash match %v, err %v",
				f.id, i+1, len(rs), r.size, blobSize, r.sum == sum, r.err)
		}
	}
	if len(rs) != 1 {
		t.Errorf("%s: %d Restore calls, want 1", f.id, len(rs))
	}
}

// applier applies "<prefix>-<i>" on a raft from conc goroutines until
// stopped, keeping the acknowledged commands. A goroutine whose apply
// fails keeps the first error and stops (on a lost leadership it would
// otherwise spin).
type applier struct {
	r      *hraft.Raft
	prefix string
	quit   chan struct{}
	stopQ  sync.Once
	wg     sync.WaitGroup
	next   atomic.Int64
	acks   atomic.Int64 // acknowledged so far
	live   atomic.Int64 // goroutines still applying

	mu    sync.Mutex
	acked [][]byte // guarded by mu
	err   error    // guarded by mu: the first failure
}

func startApplier(t *testing.T, r *hraft.Raft, prefix string, conc int) *applier {
	a := &applier{r: r, prefix: prefix, quit: make(chan struct{})}
	a.live.Store(int64(conc))
	for range conc {
		a.wg.Add(1)
		go a.run()
	}
	t.Cleanup(func() { _, _ = a.stop() })
	return a
}

func (a *applier) run() {
	defer a.wg.Done()
	defer a.live.Add(-1)
	for {
		select {
		case <-a.quit:
			return
		default:
		}
		d := fmt.Appendf(nil, "%s-%d", a.prefix, a.next.Add(1))
		if err := a.r.Apply(d, 10*time.Second).Error(); err != nil {
			a.mu.Lock()
			if a.err == nil {
				a.err = err
			}
			a.mu.Unlock()
			return
		}
		a.mu.Lock()
		a.acked = append(a.acked, d)
		a.mu.Unlock()
		a.acks.Add(1)
	}
}

func (a *applier) count() int64 { return a.acks.Load() }

// await waits until n applies have been acknowledged; it fails t at once
// if every goroutine has stopped on an error.
func (a *applier) await(t *testing.T, d time.Duration, n int64) {
	t.Helper()
	waitFor(t, d, fmt.Sprintf("%d applies acknowledged", n), func() bool {
		if a.live.Load() == 0 {
			_, err := a.stop()
			t.Fatalf("every applier stopped after %d acknowledged; first error: %v", a.count(), err)
		}
		return a.count() >= n
	})
}

// stop stops the goroutines, waits for them, and returns the acknowledged
// commands and the first error.
func (a *applier) stop() ([][]byte, error) {
	a.stopQ.Do(func() { close(a.quit) })
	a.wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.acked, a.err
}

// A new non-voter whose leader has compacted its log gets the 64 MiB
// snapshot by InstallSnapshot while applies go on, restores the blob
// exactly, and then has every acknowledged command.
func TestClusterNonVoterCatchesUpBySnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 64 MiB snapshots")
	}
	noLeaks(t)
	o := snapshotOpts(nil)
	c, l, pre, sum := snapshotCluster(t, o)
	a := startApplier(t, l.raft, "during", 4)
	a.await(t, 10*time.Second, 50)

	nn := c.startNode(3, o)
	if err := l.raft.AddNonvoter(nn.id, nn.addr, 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the new node's transport hands raft an InstallSnapshot", func() bool {
		return nn.tr.Stats().Snapshots >= 1
	})
	atStart, t0 := a.count(), time.Now()
	waitFor(t, 30*time.Second, "the new node restores the snapshot", func() bool {
		return len(nn.fsm.restoreLog()) >= 1
	})
	atEnd, took := a.count(), time.Since(t0)
	checkRestores(t, nn, sum)
	t.Logf("install and restore of %d MiB took %v; %d applies acknowledged meanwhile", blobSize>>20, took, atEnd-atStart)
	if atEnd-atStart <= 0 {
		t.Errorf("no apply acknowledged while the snapshot was installed (%v)", took)
	}

	a.await(t, 10*time.Second, atEnd+100)
	during, err := a.stop()
	if err != nil {
		t.Fatalf("an apply failed: %v", err)
	}
	after := applyN(t, l.raft, "after", 200, 8)
	if len(after) != 200 {
		t.Fatalf("%d of 200 applies acknowledged after the install", len(after))
	}
	want := append(append(pre, during...), after...)
	converged(t, 20*time.Second, append(c.nodes, nn), want)
	if s := nn.tr.Stats().Snapshots; s != 1 {
		t.Logf("the new node was sent %d snapshots", s)
	}
}

// pausingSnaps is a SnapshotStore whose first sink stops once at bytes
// written until resume is closed: a follower's raft caught mid-install.
type pausingSnaps struct {
	hraft.SnapshotStore
	at     int64
	paused chan struct{} // closed when the sink stops
	resume chan struct{}
	pause  sync.Once
	once   sync.Once
}

func newPausingSnaps(at int64) *pausingSnaps {
	return &pausingSnaps{at: at, paused: make(chan struct{}), resume: make(chan struct{})}
}

func (p *pausingSnaps) release() { p.once.Do(func() { close(p.resume) }) }

func (p *pausingSnaps) Create(version hraft.SnapshotVersion, index, term uint64, cfg hraft.Configuration, cfgIndex uint64, trans hraft.Transport) (hraft.SnapshotSink, error) {
	s, err := p.SnapshotStore.Create(version, index, term, cfg, cfgIndex, trans)
	if err != nil {
		return nil, err
	}
	return &pausingSink{SnapshotSink: s, p: p}, nil
}

type pausingSink struct {
	hraft.SnapshotSink
	p *pausingSnaps
	n int64 // only raft's install goroutine writes
}

func (s *pausingSink) Write(b []byte) (int, error) {
	s.n += int64(len(b))
	if s.n >= s.p.at {
		s.p.pause.Do(func() {
			close(s.p.paused)
			<-s.p.resume
		})
	}
	return s.SnapshotSink.Write(b)
}

// soleSession returns the one snapshot session t is receiving.
func (t *Transport) soleSession(tb testing.TB) *session {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.sessions) != 1 {
		tb.Fatalf("%d snapshot sessions, want 1", len(t.sessions))
	}
	for _, s := range t.sessions {
		return s
	}
	return nil
}

// The leader kills its connection to a non-voter mid-snapshot: the
// non-voter's raft sees a failed install, never a short snapshot restored;
// raft sends the snapshot again once the peer is back, and that install
// restores the whole blob. The non-voter's raft is held at 16 MiB of the
// first install (its sink pauses) so that the kill lands mid-stream, with
// the window full and chunks in flight.
func TestClusterSnapshotConnectionKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 64 MiB snapshots")
	}
	noLeaks(t)
	ps := newPausingSnaps(16 << 20)
	o := snapshotOpts(func(i int, s hraft.SnapshotStore) hraft.SnapshotStore {
		if i != 3 {
			return s
		}
		ps.SnapshotStore = s
		return ps
	})
	c, l, pre, sum := snapshotCluster(t, o)
	a := startApplier(t, l.raft, "during", 4)
	a.await(t, 10*time.Second, 50)

	nn := c.startNode(3, o)
	t.Cleanup(ps.release) // before raft's shutdown, which would wait for the sink
	if err := l.raft.AddNonvoter(nn.id, nn.addr, 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ps.paused:
	case <-time.After(30 * time.Second):
		t.Fatal("the new node's raft did not write 16 MiB of the snapshot within 30s")
	}
	s := nn.tr.soleSession(t)
	s.mu.Lock()
	recv, size := s.recv, s.size
	s.mu.Unlock()
	if recv >= size {
		t.Fatalf("the whole snapshot (%d bytes) came before the kill", size)
	}
	t.Logf("killing the connection after %d of %d bytes", recv, size)
	l.pool.MarkDead(string(nn.addr))
	waitFor(t, 10*time.Second, "the new node's transport fails the stream", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.err != nil
	})
	s.mu.Lock()
	serr := s.err
	s.mu.Unlock()
	if !errors.Is(serr, ErrSnapshotTruncated) {
		t.Errorf("the stream failed with %v, want ErrSnapshotTruncated", serr)
	}
	ps.release()
	select {
	case <-s.answered:
	case <-time.After(10 * time.Second):
		t.Fatal("the new node's raft did not answer the failed install")
	}
	s.mu.Lock()
	resp := s.resp
	s.mu.Unlock()
	if r, _ := resp.Response.(*hraft.InstallSnapshotResponse); resp.Error == nil || r == nil || r.Success {
		t.Errorf("the new node's raft answered the killed install with %+v, want a failure", resp)
	}
	if rs := nn.fsm.restoreLog(); len(rs) != 0 {
		t.Fatalf("the failed install reached Restore: %+v", rs)
	}
	l.pool.MarkAlive(string(nn.addr))

	atAlive := a.count()
	waitFor(t, 30*time.Second, "the new node restores a later install", func() bool {
		return len(nn.fsm.restoreLog()) >= 1
	})
	checkRestores(t, nn, sum)
	if n := nn.tr.Stats().Snapshots; n < 2 {
		t.Errorf("%d InstallSnapshot RPCs reached the new node's raft, want at least 2", n)
	}
	atEnd := a.count()
	t.Logf("%d applies acknowledged between the reconnection and the restore", atEnd-atAlive)

	a.await(t, 10*time.Second, atEnd+100)
	during, err := a.stop()
	if err != nil {
		t.Fatalf("an apply failed: %v", err)
	}
	after := applyN(t, l.raft, "after", 200, 8)
	if len(after) != 200 {
		t.Fatalf("%d of 200 applies acknowledged after the install", len(after))
	}
	converged(t, 20*time.Second, append(c.nodes, nn), append(append(pre, during...), after...))
}

// hookedLogs is a LogStore whose StoreLogs first runs the hook, if one is
// set: a hook's error fails the store with nothing stored, and a hook may
// block, as a stalled disk does.
type hookedLogs struct {
	hraft.LogStore
	hook   atomic.Pointer[func([]*hraft.Log) error]
	stored atomic.Int64 // entries stored
}

func (h *hookedLogs) setHook(f func([]*hraft.Log) error) { h.hook.Store(&f) }

func (h *hookedLogs) StoreLog(l *hraft.Log) error { return h.StoreLogs([]*hraft.Log{l}) }

func (h *hookedLogs) StoreLogs(logs []*hraft.Log) error {
	if f := h.hook.Load(); f != nil {
		if err := (*f)(logs); err != nil {
			return err
		}
	}
	if err := h.LogStore.StoreLogs(logs); err != nil {
		return err
	}
	h.stored.Add(int64(len(logs)))
	return nil
}

// hookedCluster is 3 voters on hookedLogs, its leader, a follower and the
// follower's log store.
func hookedCluster(t *testing.T) (*cluster, *rnode, *rnode, *hookedLogs) {
	t.Helper()
	hooks := make([]*hookedLogs, 3)
	// raft's default timing, as snapConfig's: under make test, with other
	// packages' race-detector tests beside it, the process stalls past
	// raftConfig's 200 ms lease at times, and a leader that steps down
	// voids these tests' premise (one stable leader).
	d := hraft.DefaultConfig()
	c := newCluster(t, 3, clusterOpts{
		raft: func(c *hraft.Config) {
			c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = d.HeartbeatTimeout, d.ElectionTimeout, d.LeaderLeaseTimeout
		},
		logs: func(i int, s hraft.LogStore) hraft.LogStore {
			hooks[i] = &hookedLogs{LogStore: s}
			return hooks[i]
		}})
	l := c.leader(10 * time.Second)
	f := c.others(l)[0]
	for i, n := range c.nodes {
		if n == f {
			return c, l, f, hooks[i]
		}
	}
	panic("unreachable")
}

// pipelineTo returns the pipeline tr has open to target, or nil.
func (t *Transport) pipelineTo(target hraft.ServerAddress) *pipeline {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p := range t.pipelines {
		if p.target == target {
			return p
		}
	}
	return nil
}

// A follower's disk stalls for 3 s mid-pipeline: the leader goes on
// committing with the other follower (and keeps its leadership: the
// applies would fail otherwise); when the disk comes back the follower
// catches up on the same pipeline, well within Timeout, and has every
// acknowledged command.
func TestClusterFollowerLogStoreBlocks(t *testing.T) {
	noLeaks(t)
	c, l, f, fh := hookedCluster(t)
	a := startApplier(t, l.raft, "a", 8)
	waitFor(t, 10*time.Second, "the leader pipelines to the follower", func() bool {
		return l.tr.pipelineTo(f.addr) != nil && fh.stored.Load() >= 200
	})
	p0 := l.tr.pipelineTo(f.addr)

	const stall = 3 * time.Second
	blocked, released, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var releaseOnce, stallOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	trigger := fh.stored.Load() + 100
	fh.setHook(func([]*hraft.Log) error {
		if fh.stored.Load() < trigger {
			return nil
		}
		stallOnce.Do(func() {
			close(blocked)
			tm := time.NewTimer(stall) // the stalled disk
			defer tm.Stop()
			select {
			case <-tm.C:
			case <-release:
			}
			close(released)
		})
		return nil
	})
	select {
	case <-blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("the follower's store did not stall within 10s")
	}
	atBlock := a.count()
	select {
	case <-released:
	case <-time.After(2 * stall):
		t.Fatal("the stall did not end")
	}
	atRelease, target, t1 := a.count(), l.raft.LastIndex(), time.Now()
	t.Logf("%d applies acknowledged during the %v stall", atRelease-atBlock, stall)
	if atRelease-atBlock <= 0 {
		t.Errorf("no apply acknowledged while the follower's store stalled")
	}

	bound := DefaultTimeout / 2 // a wedged pipeline would recover only after Timeout
	waitFor(t, bound, fmt.Sprintf("the follower replicates to index %d after the stall", target), func() bool {
		return f.raft.LastIndex() >= target
	})
	t.Logf("follower at the leader's index %d %v after the stall", target, time.Since(t1))
	if p := l.tr.pipelineTo(f.addr); p != p0 {
		t.Errorf("the leader's pipeline to the follower was replaced (%p, was %p) over a stall shorter than Timeout", p, p0)
	}

	a.await(t, 10*time.Second, atRelease+100)
	acked, err := a.stop()
	if err != nil {
		t.Fatalf("an apply failed: %v", err)
	}
	converged(t, 20*time.Second, c.nodes, acked)
}

// A follower whose store fails answers Success=false to an AppendEntries
// mid-pipeline, three times: each time the leader drops the pipeline,
// catches the follower up and pipelines again, and the follower ends with
// every acknowledged command.
func TestClusterFollowerRejectsMidPipeline(t *testing.T) {
	noLeaks(t)
	c, l, f, fh := hookedCluster(t)
	a := startApplier(t, l.raft, "a", 8)
	const rejections = 3
	for k := range rejections {
		base := fh.stored.Load()
		waitFor(t, 10*time.Second, "the leader pipelines to the follower", func() bool {
			return l.tr.pipelineTo(f.addr) != nil && fh.stored.Load() >= base+100
		})
		p0 := l.tr.pipelineTo(f.addr)
		injected := make(chan struct{})
		var once sync.Once
		fh.setHook(func([]*hraft.Log) error {
			var err error
			once.Do(func() {
				err = errInjected // raft's appendEntries answers Success=false
				close(injected)
			})
			return err
		})
		select {
		case <-injected:
		case <-time.After(10 * time.Second):
			t.Fatal("no AppendEntries reached the follower's store within 10s")
		}
		mark, t1 := l.raft.LastIndex(), time.Now()
		waitFor(t, 5*time.Second, fmt.Sprintf("rejection %d: the follower replicates to index %d", k+1, mark), func() bool {
			if st := l.raft.State(); st != hraft.Leader {
				t.Fatalf("rejection %d: the leader is now %v: the process stalled past the lease", k+1, st)
			}
			return f.raft.LastIndex() >= mark
		})
		waitFor(t, 5*time.Second, fmt.Sprintf("rejection %d: a new pipeline to the follower", k+1), func() bool {
			p := l.tr.pipelineTo(f.addr)
			return p != nil && p != p0
		})
		t.Logf("rejection %d: follower at index %d and pipelined again %v later", k+1, mark, time.Since(t1))
	}
	a.await(t, 10*time.Second, a.count()+100)
	acked, err := a.stop()
	if err != nil {
		t.Fatalf("an apply failed: %v", err)
	}
	converged(t, 20*time.Second, c.nodes, acked)
}

// sequentialRaft answers tr's RPCs one at a time on one goroutine, as
// raft's main goroutine does: it reads an InstallSnapshot's Reader to the
// end before it takes the next RPC. It keeps the longest wait of a Read.
type sequentialRaft struct {
	longest atomic.Int64 // nanoseconds
}

func answerSequentially(t *testing.T, tr *Transport) *sequentialRaft {
	sr := new(sequentialRaft)
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			var rpc hraft.RPC
			select {
			case rpc = <-tr.Consumer():
			case <-stop:
				return
			}
			switch cmd := rpc.Command.(type) {
			case *hraft.AppendEntriesRequest:
				rpc.Respond(&hraft.AppendEntriesResponse{Term: cmd.Term, LastLog: cmd.PrevLogEntry + uint64(len(cmd.Entries)), Success: true}, nil)
			case *hraft.InstallSnapshotRequest:
				var n int64
				var err error
				for err == nil {
					start := time.Now()
					var k int
					k, err = rpc.Reader.Read(buf)
					n += int64(k)
					if d := int64(time.Since(start)); d > sr.longest.Load() {
						sr.longest.Store(d)
					}
				}
				if errors.Is(err, io.EOF) && n == cmd.Size {
					err = nil
				}
				rpc.Respond(&hraft.InstallSnapshotResponse{Term: cmd.Term, Success: err == nil}, err)
			default:
				rpc.Respond(nil, fmt.Errorf("unexpected %T", cmd))
			}
		}
	}()
	return sr
}

// A follower's raft reads a snapshot on its main goroutine, so it cannot
// take an AppendEntries from the same leader until the install is over.
// raft sends one when its leader steps down and wins again mid-install:
// the old term's InstallSnapshot streams on while the new term's
// replication appends to the same follower, on the same pooled
// connection. The chunks that install needs must not wait behind that
// append.
//
// They did, when AppendEntries and Snapshot.Chunk were both ModeOrdered
// (conn runs all ModeOrdered handlers of a connection one at a time): the
// append's handler sat in handOff (raft does not take it) with the chunks
// queued behind it, and raft's Read waited for them, a circular wait that
// only the append's Timeout broke; the stream moved about one
// SnapshotWindow per Timeout. TestClusterSnapshotConnectionKilled met it
// when its leader lost its lease mid-install: the last 8 MiB of 64 took
// 40 s, with "AppendEntries ... context deadline exceeded" every 10 s.
// Snapshot calls now run on the worker pool, chunks ordered by offset.
func TestSnapshotNotBehindWaitingAppend(t *testing.T) {
	noLeaks(t)
	f, l := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	sr := answerSequentially(t, f.tr)
	const size = 16 << 20
	installed := make(chan error, 1)
	go func() {
		installed <- l.tr.InstallSnapshot("f", f.addr, snapshotArgs(size), new(hraft.InstallSnapshotResponse), io.LimitReader(newNoise(3), size))
	}()
	waitFor(t, 10*time.Second, "1 MiB of the snapshot received", func() bool {
		f.tr.mu.Lock()
		defer f.tr.mu.Unlock()
		for _, s := range f.tr.sessions {
			s.mu.Lock()
			recv := s.recv
			s.mu.Unlock()
			return recv >= 1<<20
		}
		return false
	})
	appended := make(chan error, 1)
	go func() {
		appended <- l.tr.AppendEntries("f", f.addr, bigAppend(1, 64), new(hraft.AppendEntriesResponse))
	}()
	t0 := time.Now()
	select {
	case err := <-installed:
		if err != nil {
			t.Fatalf("install: %v", err)
		}
	case <-time.After(3 * DefaultTimeout):
		t.Fatal("the install did not end")
	}
	took := time.Since(t0)
	aerr := <-appended
	longest := time.Duration(sr.longest.Load())
	t.Logf("install ended %v after the append was sent; the longest Read took %v; the append: %v", took, longest, aerr)
	if longest > DefaultTimeout/2 {
		t.Errorf("the follower's raft waited %v for a chunk behind an AppendEntries it could not take", longest)
	}
}
