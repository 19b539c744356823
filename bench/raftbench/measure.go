package raftbench

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	hraft "github.com/hashicorp/raft"
)

// isHeartbeat is raft's own test for a heartbeat, the one NetworkTransport's
// handleCommand applies before handing the RPC to the heartbeat handler: a
// term, a leader address (the RPC header's Addr, or the older Leader field),
// and no previous entry, no entries and no commit index.
func isHeartbeat(a *hraft.AppendEntriesRequest) bool {
	return a.Term != 0 && (len(a.Addr) != 0 || len(a.Leader) != 0) && //nolint:staticcheck // raft's test reads the deprecated Leader too
		a.PrevLogEntry == 0 && a.PrevLogTerm == 0 &&
		len(a.Entries) == 0 && a.LeaderCommitIndex == 0
}

// maxLatencyNs bounds the histograms: one minute, in nanoseconds.
const maxLatencyNs = int64(time.Minute)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, maxLatencyNs, 3) }

// heartbeats records the round-trip time of heartbeats sent while recording
// is on, from every wrapped transport of a cluster.
type heartbeats struct {
	recording atomic.Bool

	mu     sync.Mutex // guards the fields below
	hist   *hdrhistogram.Histogram
	errors int64
}

func newHeartbeats() *heartbeats { return &heartbeats{hist: newHist()} }

func (h *heartbeats) record(d time.Duration, err error) {
	if !h.recording.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.errors++
		return
	}
	_ = h.hist.RecordValue(max(d.Nanoseconds(), 1))
}

// summary returns the heartbeats recorded so far.
func (h *heartbeats) summary() (count, errors int64, p50, p99, maxNs int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hist.TotalCount(), h.errors, h.hist.ValueAtQuantile(50), h.hist.ValueAtQuantile(99), h.hist.Max()
}

// measured wraps a node's transport and times the AppendEntries calls that
// are heartbeats (isHeartbeat). Everything else passes through untouched,
// SetHeartbeatHandler included, so that the inner transport keeps its fast
// path. Close closes the inner transport once: raft's Shutdown closes it
// (WithClose), and the cluster's teardown closes it again to be sure.
type measured struct {
	hraft.Transport // the inner transport; AppendEntries and Close are overridden
	hb              *heartbeats

	closeOnce sync.Once
	closeErr  error
}

// measuredPreVote is a measured transport whose inner transport implements
// WithPreVote: raft enables pre-vote only if its transport does, so the
// wrapper must say what the inner transport says.
type measuredPreVote struct{ *measured }

var (
	_ hraft.WithClose   = (*measured)(nil)
	_ hraft.WithPreVote = measuredPreVote{}
)

// wrap returns tr measured into hb; it implements WithPreVote exactly when
// tr does, and WithClose always (a no-op for a transport without Close).
func wrap(tr hraft.Transport, hb *heartbeats) hraft.Transport {
	m := &measured{Transport: tr, hb: hb}
	if _, ok := tr.(hraft.WithPreVote); ok {
		return measuredPreVote{m}
	}
	return m
}

func (m *measured) AppendEntries(id hraft.ServerID, target hraft.ServerAddress,
	args *hraft.AppendEntriesRequest, resp *hraft.AppendEntriesResponse) error {
	if !isHeartbeat(args) {
		return m.Transport.AppendEntries(id, target, args, resp)
	}
	t0 := time.Now()
	err := m.Transport.AppendEntries(id, target, args, resp)
	m.hb.record(time.Since(t0), err)
	return err
}

// Close closes the inner transport the first time; later calls return the
// first call's error.
func (m *measured) Close() error {
	m.closeOnce.Do(func() {
		if c, ok := m.Transport.(hraft.WithClose); ok {
			m.closeErr = c.Close()
		}
	})
	return m.closeErr
}

func (m measuredPreVote) RequestPreVote(id hraft.ServerID, target hraft.ServerAddress,
	args *hraft.RequestPreVoteRequest, resp *hraft.RequestPreVoteResponse) error {
	return m.Transport.(hraft.WithPreVote).RequestPreVote(id, target, args, resp)
}
