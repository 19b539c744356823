package raft

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
)

// Clusters of raft.NewRaft over hawser transports on loopback TLS.

// testFSM records the commands it applies; its snapshot is the list of
// commands plus an optional blob (to make snapshots large).
type testFSM struct {
	mu       sync.Mutex // guards the fields below
	applied  [][]byte
	seen     map[string]bool
	blob     []byte     // included in snapshots
	restores []restored // every Restore call, in order
}

// restored is what one Restore call read: the blob's size and hash, and
// the error it returned (a nil error with a wrong hash would be a partial
// snapshot restored as if whole).
type restored struct {
	size int
	sum  [sha256.Size]byte
	err  error
}

// restoreLog returns the Restore calls so far.
func (f *testFSM) restoreLog() []restored {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]restored(nil), f.restores...)
}

func newFSM() *testFSM { return &testFSM{seen: map[string]bool{}} }

func (f *testFSM) Apply(l *hraft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := bytes.Clone(l.Data)
	f.applied = append(f.applied, d)
	f.seen[string(d)] = true
	return len(f.applied)
}

func (f *testFSM) has(d []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[string(d)]
}

func (f *testFSM) Snapshot() (hraft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &fsmSnap{applied: append([][]byte(nil), f.applied...), blob: f.blob}, nil
}

// Restore reads what Persist wrote: a count, the commands, the blob's
// length, the blob. It records every call in restores.
func (f *testFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	applied, blob, err := readSnapshot(rc)
	r := restored{size: len(blob), sum: sha256.Sum256(blob), err: err}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restores = append(f.restores, r)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(applied))
	for _, d := range applied {
		seen[string(d)] = true
	}
	f.applied, f.seen, f.blob = applied, seen, blob
	return nil
}

func readSnapshot(r io.Reader) (applied [][]byte, blob []byte, err error) {
	var n uint64
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return nil, nil, err
	}
	applied = make([][]byte, 0, min(n, 1<<20))
	for i := uint64(0); i < n; i++ {
		var l uint32
		if err := binary.Read(r, binary.BigEndian, &l); err != nil {
			return nil, nil, err
		}
		d := make([]byte, l)
		if _, err := io.ReadFull(r, d); err != nil {
			return nil, nil, err
		}
		applied = append(applied, d)
	}
	var size uint64
	if err := binary.Read(r, binary.BigEndian, &size); err != nil {
		return nil, nil, err
	}
	if size > 1<<30 {
		return nil, nil, fmt.Errorf("blob of %d bytes", size)
	}
	blob = make([]byte, size)
	for off := 0; off < len(blob); off += piece {
		if _, err := io.ReadFull(r, blob[off:min(off+piece, len(blob))]); err != nil {
			return nil, nil, err
		}
	}
	return applied, blob, nil
}

// piece is the most the FSM copies at once. Under the race detector one
// copy of tens of MiB is a single long call the runtime cannot preempt, and
// a garbage collection waiting on it stops every node of the test process
// for seconds, long enough to lose leaders.
const piece = 1 << 20

type fsmSnap struct {
	applied [][]byte
	blob    []byte
}

func (s *fsmSnap) Persist(sink hraft.SnapshotSink) error {
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(len(s.applied)))
	if _, err := sink.Write(hdr[:]); err != nil {
		_ = sink.Cancel()
		return err
	}
	for _, d := range s.applied {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(d)))
		if _, err := sink.Write(l[:]); err != nil {
			_ = sink.Cancel()
			return err
		}
		if _, err := sink.Write(d); err != nil {
			_ = sink.Cancel()
			return err
		}
	}
	binary.BigEndian.PutUint64(hdr[:], uint64(len(s.blob)))
	if _, err := sink.Write(hdr[:]); err != nil {
		_ = sink.Cancel()
		return err
	}
	for off := 0; off < len(s.blob); off += piece {
		if _, err := sink.Write(s.blob[off:min(off+piece, len(s.blob))]); err != nil {
			_ = sink.Cancel()
			return err
		}
	}
	return sink.Close()
}

func (s *fsmSnap) Release() {}

// rnode is a raft server on a hawser node.
type rnode struct {
	*node
	id    hraft.ServerID
	raft  *hraft.Raft
	fsm   *testFSM
	logs  hraft.LogStore
	snaps hraft.SnapshotStore
}

type clusterOpts struct {
	node  nodeOpts
	raft  func(*hraft.Config)
	logs  func(i int, s hraft.LogStore) hraft.LogStore           // wraps a node's log store
	snaps func(i int, s hraft.SnapshotStore) hraft.SnapshotStore // wraps a node's snapshot store
	voter func(i int) bool                                       // which nodes the bootstrap names (default all)
}

func raftConfig(id hraft.ServerID) *hraft.Config {
	c := hraft.DefaultConfig()
	c.LocalID = id
	c.HeartbeatTimeout = 250 * time.Millisecond
	c.ElectionTimeout = 500 * time.Millisecond
	c.LeaderLeaseTimeout = 200 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.Logger = hclog.NewNullLogger()
	return c
}

type cluster struct {
	t     *testing.T
	nodes []*rnode
}

func newCluster(t *testing.T, n int, o clusterOpts) *cluster {
	t.Helper()
	c := &cluster{t: t}
	var servers []hraft.Server
	for i := 0; i < n; i++ {
		c.nodes = append(c.nodes, c.startNode(i, o))
		if o.voter == nil || o.voter(i) {
			servers = append(servers, hraft.Server{ID: c.nodes[i].id, Address: c.nodes[i].addr})
		}
	}
	if err := c.nodes[0].raft.BootstrapCluster(hraft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	return c
}

// startNode starts node i (not part of any configuration yet).
func (c *cluster) startNode(i int, o clusterOpts) *rnode {
	t := c.t
	t.Helper()
	rn := &rnode{node: newNode(t, o.node), id: hraft.ServerID(fmt.Sprintf("n%d", i)), fsm: newFSM()}
	store := hraft.NewInmemStore()
	rn.logs = store
	if o.logs != nil {
		rn.logs = o.logs(i, store)
	}
	rn.snaps = hraft.NewInmemSnapshotStore()
	if o.snaps != nil {
		rn.snaps = o.snaps(i, rn.snaps)
	}
	cfg := raftConfig(rn.id)
	if o.raft != nil {
		o.raft(cfg)
	}
	r, err := hraft.NewRaft(cfg, rn.fsm, rn.logs, store, rn.snaps, rn.tr)
	if err != nil {
		t.Fatal(err)
	}
	rn.raft = r
	t.Cleanup(func() {
		_ = r.Shutdown().Error()
		rn.stop()
	})
	return rn
}

// leader waits for a leader among the nodes that are up and returns it.
func (c *cluster) leader(d time.Duration, up ...*rnode) *rnode {
	c.t.Helper()
	if len(up) == 0 {
		up = c.nodes
	}
	var l *rnode
	waitFor(c.t, d, "a leader", func() bool {
		for _, n := range up {
			if n.raft.State() == hraft.Leader {
				l = n
				return true
			}
		}
		return false
	})
	return l
}

func (c *cluster) others(not *rnode) []*rnode {
	var out []*rnode
	for _, n := range c.nodes {
		if n != not {
			out = append(out, n)
		}
	}
	return out
}

// applyN applies n commands "<prefix>-<i>" on l from conc goroutines and
// returns those acknowledged (their futures returned nil).
func applyN(t *testing.T, l *hraft.Raft, prefix string, n, conc int) [][]byte {
	t.Helper()
	var mu sync.Mutex
	var acked [][]byte
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	var firstErr error
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				d := []byte(fmt.Sprintf("%s-%d", prefix, i))
				err := l.Apply(d, 10*time.Second).Error()
				mu.Lock()
				if err == nil {
					acked = append(acked, d)
				} else if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Logf("applies failed (first): %v", firstErr)
	}
	return acked
}

// converged waits until every node in ns has applied every command in want.
func converged(t *testing.T, d time.Duration, ns []*rnode, want [][]byte) {
	t.Helper()
	for _, n := range ns {
		waitFor(t, d, fmt.Sprintf("%s applied %d commands", n.id, len(want)), func() bool {
			for _, w := range want {
				if !n.fsm.has(w) {
					return false
				}
			}
			return true
		})
	}
}

var errInjected = errors.New("injected")
