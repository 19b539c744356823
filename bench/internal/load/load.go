// Package load drives one implementation's client for the benchmark and
// measures it: a closed loop (Conc callers, each waiting for its reply) or
// an open loop (a fixed rate, latency counted from each call's scheduled
// time so a slow server cannot hide its queueing), or Conc streams. The
// workload runs through warm-up and measurement without a pause; only the
// measurement window is recorded.
package load

import (
	"context"
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/hawser-rpc/hawser/bench/internal/impl"
)

// Spec is one run's workload.
type Spec struct {
	Scenario string // "unary" or "stream"
	Size     int
	Conc     int
	Rate     float64 // calls/s in total; 0 for a closed loop
}

// Result is what the client side measured in the window.
type Result struct {
	Calls         int64   `json:"calls"` // calls, or stream items
	Errors        int64   `json:"errors"`
	Seconds       float64 `json:"seconds"`
	P50           float64 `json:"p50_us"`
	P90           float64 `json:"p90_us"`
	P99           float64 `json:"p99_us"`
	P999          float64 `json:"p999_us"`
	Max           float64 `json:"max_us"`
	ClientCPUNs   int64   `json:"client_cpu_ns"`
	ClientMallocs uint64  `json:"client_mallocs"`
	// ClientCtxSwitches is the client process's voluntary plus involuntary
	// context switches in the window, all threads (see Usage).
	ClientCtxSwitches int64 `json:"client_ctx_switches"`
}

const maxLatencyUs = 60_000_000

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, maxLatencyUs, 3) }

// worker state, one per goroutine: no sharing on the hot path.
type worker struct {
	hist   *hdrhistogram.Histogram
	calls  int64
	errors int64
}

// Run runs spec against c. ready is called once warm-up is over and returns
// when measurement must start (the runner snapshots the server first);
// done is called as soon as the window of length d closes (the runner
// snapshots the server again).
func Run(ctx context.Context, c impl.Client, spec Spec, warmup, d time.Duration, ready, done func()) Result {
	var recording atomic.Bool
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := make([]*worker, spec.Conc)
	for i := range workers {
		workers[i] = &worker{hist: newHist()}
	}
	var wg sync.WaitGroup
	switch {
	case spec.Scenario == "stream":
		startStreams(ctx, &wg, c, spec, workers, &recording)
	case spec.Rate > 0:
		startOpenLoop(ctx, &wg, c, spec, workers, &recording)
	default:
		startClosedLoop(ctx, &wg, c, spec, workers, &recording)
	}

	time.Sleep(warmup)
	ready()
	u0 := Sample()
	start := time.Now()
	recording.Store(true)
	time.Sleep(d)
	recording.Store(false)
	secs := time.Since(start).Seconds()
	u1 := Sample()
	done()
	cancel()
	wg.Wait()

	total := newHist()
	var r Result
	for _, w := range workers {
		total.Merge(w.hist)
		r.Calls += w.calls
		r.Errors += w.errors
	}
	r.Seconds = secs
	r.P50 = float64(total.ValueAtQuantile(50))
	r.P90 = float64(total.ValueAtQuantile(90))
	r.P99 = float64(total.ValueAtQuantile(99))
	r.P999 = float64(total.ValueAtQuantile(99.9))
	r.Max = float64(total.Max())
	r.ClientCPUNs = u1.CPUNs - u0.CPUNs
	r.ClientMallocs = u1.Mallocs - u0.Mallocs
	r.ClientCtxSwitches = u1.CtxSwitches - u0.CtxSwitches
	return r
}

func startClosedLoop(ctx context.Context, wg *sync.WaitGroup, c impl.Client, spec Spec, workers []*worker, rec *atomic.Bool) {
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := make([]byte, spec.Size)
			for ctx.Err() == nil {
				t0 := time.Now()
				resp, err := c.Unary(ctx, req)
				if !rec.Load() {
					continue
				}
				if err != nil || len(resp) != spec.Size {
					if ctx.Err() == nil {
						w.errors++
					}
					continue
				}
				_ = w.hist.RecordValue(time.Since(t0).Microseconds())
				w.calls++
			}
		}()
	}
}

// startOpenLoop schedules calls at spec.Rate and lets the workers run them;
// latency counts from the scheduled time.
func startOpenLoop(ctx context.Context, wg *sync.WaitGroup, c impl.Client, spec Spec, workers []*worker, rec *atomic.Bool) {
	due := make(chan time.Time, 1<<16)
	var dropped atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(due)
		interval := time.Duration(float64(time.Second) / spec.Rate)
		next := time.Now()
		for ctx.Err() == nil {
			now := time.Now()
			for !next.After(now) {
				select {
				case due <- next:
				default:
					if rec.Load() {
						dropped.Add(1) // the workers are that far behind: count it as an error
					}
				}
				next = next.Add(interval)
			}
			time.Sleep(min(next.Sub(now), time.Millisecond))
		}
	}()
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := make([]byte, spec.Size)
			for t := range due {
				resp, err := c.Unary(ctx, req)
				if !rec.Load() || t.IsZero() {
					continue
				}
				if err != nil || len(resp) != spec.Size {
					if ctx.Err() == nil {
						w.errors++
					}
					continue
				}
				_ = w.hist.RecordValue(time.Since(t).Microseconds())
				w.calls++
			}
			if i == 0 {
				w.errors += dropped.Load()
			}
		}()
	}
}

func startStreams(ctx context.Context, wg *sync.WaitGroup, c impl.Client, spec Spec, workers []*worker, rec *atomic.Bool) {
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Stream(ctx, spec.Size, func(item []byte) {
				if !rec.Load() {
					return
				}
				w.calls++
				if len(item) >= 8 {
					sent := int64(binary.BigEndian.Uint64(item))
					_ = w.hist.RecordValue(max(time.Now().UnixNano()-sent, 1000) / 1000)
				}
			})
			if err != nil && ctx.Err() == nil {
				w.errors++
			}
		}()
	}
}

// Usage is what a process has used so far; the runner takes the difference
// of two samples around the measured window.
type Usage struct {
	CPUNs   int64  // user + system CPU time
	Mallocs uint64 // heap allocations
	// CtxSwitches is voluntary plus involuntary context switches of every
	// thread of the process, live or exited (getrusage RUSAGE_SELF, the
	// count perf stat -e context-switches gives). /proc/PID/status is not
	// used: its ctxt_switches lines count the main thread alone.
	CtxSwitches int64
}

// Sample returns the process's usage so far. It stops the world briefly
// (runtime.ReadMemStats): call it only at a window's edges.
func Sample() Usage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Usage{
		CPUNs:       ru.Utime.Nano() + ru.Stime.Nano(),
		Mallocs:     ms.Mallocs,
		CtxSwitches: ru.Nvcsw + ru.Nivcsw,
	}
}
