package raftbench

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	hraft "github.com/hashicorp/raft"

	"github.com/hawser-rpc/hawser/bench/internal/load"
)

// Options is one run.
type Options struct {
	Impl string // one of Impls
	Size int    // bytes of each applied command
	Conc int    // goroutines applying, each waiting for its future
	// Warmup runs the load unmeasured; Duration is the measured window.
	Warmup, Duration time.Duration
}

// Result is what one run measured in its window. Durations are in
// microseconds; CPU and allocations count the whole process (three nodes
// and the appliers).
type Result struct {
	Impl    string
	Size    int
	Conc    int
	Ops     int64   // applies committed (future returned nil) in the window
	Errors  int64   // applies whose future returned an error in the window
	Seconds float64 // the window's length
	P50Us   float64 // commit latency: Apply to the future's Error returning
	P99Us   float64
	MaxUs   float64
	CPUNs   int64  // user + system CPU time of the process in the window
	Mallocs uint64 // heap allocations of the process in the window
	// Heartbeats the leader sent in the window: how many, how many failed,
	// and the round-trip time of those that did not.
	HBCount, HBErrors         int64
	HBP50Us, HBP99Us, HBMaxUs float64
}

// OpsPerSec is the throughput of the window.
func (r Result) OpsPerSec() float64 { return float64(r.Ops) / r.Seconds }

// CPUUsPerOp is the process's CPU time per committed apply.
func (r Result) CPUUsPerOp() float64 { return perOp(float64(r.CPUNs)/1e3, r.Ops) }

// AllocsPerOp is the process's heap allocations per committed apply.
func (r Result) AllocsPerOp() float64 { return perOp(float64(r.Mallocs), r.Ops) }

func perOp(x float64, ops int64) float64 {
	if ops == 0 {
		return 0
	}
	return x / float64(ops)
}

// Timeouts of a run's steps.
const (
	// applyTimeout is Apply's enqueue timeout.
	applyTimeout = 10 * time.Second
	// electionTimeout bounds the wait for a leader: raft's first election
	// comes within two heartbeat timeouts (1-2s) of the start.
	electionTimeout = 30 * time.Second
	// teardownTimeout bounds the wait for a run's goroutines to end.
	teardownTimeout = 10 * time.Second
)

// Run runs one cluster of o.Impl under o's load and tears it down. It fails
// if the cluster's goroutines outlive the teardown.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Size < 1 || o.Conc < 1 || o.Duration <= 0 {
		return Result{}, errors.New("raftbench: Size, Conc and Duration must be positive")
	}
	// The previous run's garbage is collected now, not in this run's window.
	runtime.GC()
	base := runtime.NumGoroutine()
	r, err := run(ctx, o)
	if err != nil {
		return r, err
	}
	return r, waitGoroutines(base)
}

func run(ctx context.Context, o Options) (_ Result, err error) {
	c, err := newCluster(o.Impl)
	if err != nil {
		return Result{}, err
	}
	defer func() { err = errors.Join(err, c.close()) }()
	leader, err := c.leader(ctx, electionTimeout)
	if err != nil {
		return Result{}, err
	}

	data := make([]byte, o.Size)
	_, _ = rand.Read(data)
	var recording atomic.Bool
	type applier struct {
		hist        *hdrhistogram.Histogram
		ops, errors int64
	}
	appliers := make([]*applier, o.Conc)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range appliers {
		a := &applier{hist: newHist()}
		appliers[i] = a
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				err := leader.Apply(data, applyTimeout).Error()
				if !recording.Load() {
					continue
				}
				if err != nil {
					a.errors++
					continue
				}
				_ = a.hist.RecordValue(max(time.Since(t0).Nanoseconds(), 1))
				a.ops++
			}
		})
	}

	time.Sleep(o.Warmup)
	u0 := load.Sample()
	start := time.Now()
	c.hb.recording.Store(true)
	recording.Store(true)
	time.Sleep(o.Duration)
	recording.Store(false)
	c.hb.recording.Store(false)
	secs := time.Since(start).Seconds()
	u1 := load.Sample()
	close(stop)
	wg.Wait()

	total := newHist()
	r := Result{Impl: o.Impl, Size: o.Size, Conc: o.Conc, Seconds: secs,
		CPUNs: u1.CPUNs - u0.CPUNs, Mallocs: u1.Mallocs - u0.Mallocs}
	for _, a := range appliers {
		total.Merge(a.hist)
		r.Ops += a.ops
		r.Errors += a.errors
	}
	r.P50Us = us(total.ValueAtQuantile(50))
	r.P99Us = us(total.ValueAtQuantile(99))
	r.MaxUs = us(total.Max())
	var p50, p99, mx int64
	r.HBCount, r.HBErrors, p50, p99, mx = c.hb.summary()
	r.HBP50Us, r.HBP99Us, r.HBMaxUs = us(p50), us(p99), us(mx)
	if r.Ops == 0 {
		return r, fmt.Errorf("raftbench: %s: no apply committed in %v (%d errors)", o.Impl, o.Duration, r.Errors)
	}
	return r, nil
}

func us(ns int64) float64 { return float64(ns) / 1e3 }

// Snapshot measures one InstallSnapshot of size bytes between two fresh
// transports of impl, without raft: the sending side's InstallSnapshot
// call, from its start to its return, while the receiving side's consumer
// reads the snapshot to its end and answers Success. It fails unless the
// receiver read exactly size bytes, and if the transports' goroutines
// outlive their teardown.
func Snapshot(ctx context.Context, impl string, size int64) (time.Duration, error) {
	runtime.GC()
	base := runtime.NumGoroutine()
	d, err := snapshot(ctx, impl, size)
	if err != nil {
		return d, err
	}
	return d, waitGoroutines(base)
}

func snapshot(_ context.Context, impl string, size int64) (_ time.Duration, err error) {
	eps, err := newEndpoints(impl, 2)
	if err != nil {
		return 0, err
	}
	defer func() { err = errors.Join(err, closeAll(eps)) }()
	sender, receiver := eps[0].tr, eps[1].tr

	done := make(chan struct{})
	var got atomic.Int64
	var wg sync.WaitGroup
	defer func() { close(done); wg.Wait() }()
	wg.Go(func() {
		for {
			select {
			case rpc := <-receiver.Consumer():
				req, ok := rpc.Command.(*hraft.InstallSnapshotRequest)
				if !ok {
					rpc.Respond(nil, fmt.Errorf("raftbench: unexpected %T", rpc.Command))
					continue
				}
				n, err := io.Copy(io.Discard, rpc.Reader)
				got.Store(n)
				if err == nil && n != req.Size {
					err = fmt.Errorf("raftbench: snapshot of %d bytes read as %d", req.Size, n)
				}
				if err != nil {
					rpc.Respond(nil, err)
					continue
				}
				rpc.Respond(&hraft.InstallSnapshotResponse{Term: req.Term, Success: true}, nil)
			case <-done:
				return
			}
		}
	})

	addr := sender.LocalAddr()
	req := &hraft.InstallSnapshotRequest{
		RPCHeader:       hraft.RPCHeader{ID: []byte("n0"), Addr: sender.EncodePeer("n0", addr)},
		SnapshotVersion: hraft.SnapshotVersionMax,
		Term:            1, Leader: sender.EncodePeer("n0", addr),
		LastLogIndex: 1, LastLogTerm: 1, Size: size,
		ConfigurationIndex: 1,
	}
	var resp hraft.InstallSnapshotResponse
	t0 := time.Now()
	err = sender.InstallSnapshot("n1", receiver.LocalAddr(), req, &resp, io.LimitReader(newPattern(), size))
	d := time.Since(t0)
	if err != nil {
		return d, fmt.Errorf("raftbench: %s: InstallSnapshot: %w", impl, err)
	}
	if !resp.Success || got.Load() != size {
		return d, fmt.Errorf("raftbench: %s: InstallSnapshot of %d bytes: success %v, %d bytes read", impl, size, resp.Success, got.Load())
	}
	return d, nil
}

// pattern is an endless reader of 64 KiB of random bytes, repeated: a
// snapshot's content without a snapshot's memory.
type pattern struct {
	buf []byte
	off int
}

func newPattern() *pattern {
	p := &pattern{buf: make([]byte, 64<<10)}
	_, _ = rand.Read(p.buf)
	return p
}

func (p *pattern) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		c := copy(b[n:], p.buf[p.off:])
		n += c
		p.off = (p.off + c) % len(p.buf)
	}
	return n, nil
}

// waitGoroutines waits until no more than base goroutines are left, and
// fails with the leftovers' stacks after teardownTimeout.
func waitGoroutines(base int) error {
	deadline := time.Now().Add(teardownTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			var dump bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
			return fmt.Errorf("raftbench: %d goroutines left %v after teardown (%d before the run):\n%s",
				runtime.NumGoroutine(), teardownTimeout, base, dump.String())
		}
		<-tick.C
	}
	return nil
}
