package workers

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fn func()

func (f fn) Run() { f() }

// gate holds tasks until it opens. open is idempotent, so a test defers it
// and a failing test still lets the pool drain and its goroutines exit.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

func newGate() *gate  { return &gate{ch: make(chan struct{})} }
func (g *gate) wait() { <-g.ch }
func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// within fails the test unless ch is closed within d: tests wait for a
// condition with a deadline, never for a fixed time.
func within(t *testing.T, d time.Duration, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

func TestRunsAndBounds(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := New(Config{Max: 4, Queue: 8, Min: 1})
	release := make(chan struct{})
	var running, peak atomic.Int32
	var done sync.WaitGroup
	task := fn(func() {
		n := running.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		<-release
		running.Add(-1)
		done.Done()
	})
	accepted := 0
	for range 20 {
		done.Add(1)
		if p.Submit(task) {
			accepted++
		} else {
			done.Done()
		}
	}
	// 4 running plus 8 queued; the rest refused at once.
	if accepted != 12 {
		t.Fatalf("accepted %d tasks, want 12 (4 running + 8 queued)", accepted)
	}
	close(release)
	done.Wait()
	if peak.Load() > 4 {
		t.Fatalf("%d tasks ran at once, max is 4", peak.Load())
	}
	p.Close()
	if p.Submit(task) {
		t.Fatal("Submit after Close succeeded")
	}
}

// Goroutines above Min exit after IdleTimeout without work; Min stay.
func TestIdleGoroutinesRetire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Max: 8, Min: 1, IdleTimeout: 20 * time.Millisecond})
		block := newGate()
		defer p.Close()
		defer block.open() // a failing test still lets the pool drain
		for range 8 {
			if !p.Submit(fn(func() { block.wait() })) {
				t.Fatal("Submit refused below Max")
			}
		}
		synctest.Wait()
		if p.Running() != 8 {
			t.Fatalf("%d goroutines run 8 blocking tasks, want 8", p.Running())
		}
		block.open()
		synctest.Wait()
		if p.Running() != 8 {
			t.Fatalf("%d goroutines left before IdleTimeout, want 8", p.Running())
		}
		time.Sleep(20 * time.Millisecond) // the bubble's clock: no real wait
		synctest.Wait()
		if p.Running() != 1 {
			t.Fatalf("%d goroutines left after idling, want Min=1", p.Running())
		}
		p.Close()
	})
}

// Regression: a burst of Submits that all saw the one idle goroutine used
// to queue every task behind it, although the pool could start more; the
// tasks sat in the queue behind a blocked task with 2 of 8 goroutines
// running.
func TestBurstWithOneIdleStartsGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxG = 8
		p := New(Config{Max: maxG, Min: 1})
		release := newGate()
		defer p.Close()
		defer release.open() // a failing test still lets the pool drain
		var started atomic.Int32
		block := fn(func() { started.Add(1); release.wait() })
		p.Submit(block)         // occupies one goroutine
		p.Submit(fn(func() {})) // starts a second, which goes idle
		synctest.Wait()
		if p.Running() != 2 || started.Load() != 1 {
			t.Fatalf("setup: %d running, %d started; want 2, 1", p.Running(), started.Load())
		}
		for range maxG + 2 {
			if !p.Submit(block) {
				t.Fatal("Submit refused with room in the queue")
			}
		}
		synctest.Wait()
		if got := started.Load(); got != maxG {
			t.Errorf("%d tasks run at once, want Max=%d (%d goroutines)", got, maxG, p.Running())
		}
		release.open()
		p.Close()
		if got := started.Load(); got != maxG+3 {
			t.Fatalf("%d blocking tasks ran, want %d", got, maxG+3)
		}
	})
}

// Submit racing goroutines that retire all the time (IdleTimeout 1µs).
// Each pair's first task blocks until its second runs, so a second that
// sits in the queue while fewer than Max goroutines run and none takes it
// hangs its pair: there are fewer pairs than Max, so the pool must always
// find the second a goroutine.
func TestSubmitRetireStress(t *testing.T) {
	defer goleak.VerifyNone(t)
	const maxG, rounds = 8, 300
	const pairs = maxG - 2
	p := New(Config{Max: maxG, Min: 1, IdleTimeout: time.Microsecond})
	var running, peak atomic.Int32
	enter := func() {
		n := running.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
	}
	var wg sync.WaitGroup
	for g := range pairs {
		wg.Go(func() {
			for i := range rounds {
				second := make(chan struct{})
				both := make(chan struct{})
				var left atomic.Int32
				left.Store(2)
				finish := func() {
					running.Add(-1)
					if left.Add(-1) == 0 {
						close(both)
					}
				}
				ok1 := p.Submit(fn(func() { enter(); <-second; finish() }))
				if (g+i)%3 == 0 {
					// Let the goroutines go idle and retire in between.
					for range i % 5 {
						runtime.Gosched()
					}
				}
				ok2 := p.Submit(fn(func() { enter(); close(second); finish() }))
				if !ok1 || !ok2 {
					t.Error("Submit refused with room in the queue")
					return
				}
				select {
				case <-both:
				case <-time.After(10 * time.Second):
					t.Errorf("pair %d/%d hung: a task stranded in the queue with %d goroutines running", g, i, p.Running())
					return
				}
			}
		})
	}
	wg.Wait()
	p.Close()
	if peak.Load() > maxG {
		t.Fatalf("%d tasks ran at once, Max is %d", peak.Load(), maxG)
	}
	if p.Running() != 0 {
		t.Fatalf("%d goroutines counted after Close", p.Running())
	}
}

func TestCloseRunsQueued(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := New(Config{Max: 1, Queue: 100})
	var ran atomic.Int32
	for range 50 {
		p.Submit(fn(func() { ran.Add(1) }))
	}
	p.Close()
	if ran.Load() != 50 {
		t.Fatalf("ran %d of 50 queued tasks", ran.Load())
	}
}

// Close waits for blocked tasks and runs every task queued behind them
// before it returns; Submit fails from the moment Close starts.
func TestCloseRunsQueuedBehindBlocked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Max: 2, Queue: 100, Min: 1})
		release := newGate()
		defer p.Close()
		defer release.open() // a failing test still lets the pool drain
		for range 2 {
			p.Submit(fn(func() { release.wait() }))
		}
		var ran atomic.Int32
		for range 50 {
			if !p.Submit(fn(func() { ran.Add(1) })) {
				t.Fatal("Submit refused with room in the queue")
			}
		}
		closed := make(chan struct{})
		go func() { p.Close(); close(closed) }()
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("Close returned while tasks block")
		default:
		}
		if p.Submit(fn(func() {})) {
			t.Fatal("Submit during Close succeeded")
		}
		if ran.Load() != 0 {
			t.Fatalf("%d tasks ran while both goroutines were blocked", ran.Load())
		}
		release.open()
		<-closed
		if ran.Load() != 50 {
			t.Fatalf("Close returned after %d of 50 queued tasks", ran.Load())
		}
		if p.Running() != 0 {
			t.Fatalf("%d goroutines counted after Close", p.Running())
		}
	})
}

// Shutdown returns ctx.Err() at ctx's deadline while a task blocks; the
// pool finishes in the background and a later Shutdown waits for it.
func TestShutdownReturnsByDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Max: 1, Min: 1})
		release := newGate()
		defer p.Close()
		defer release.open() // a failing test still lets the pool drain
		p.Submit(fn(func() { release.wait() }))
		var queuedRan atomic.Bool
		p.Submit(fn(func() { queuedRan.Store(true) }))

		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want %v", err, context.DeadlineExceeded)
		}
		if d := time.Since(start); d != 50*time.Millisecond {
			t.Fatalf("Shutdown returned after %v, want the deadline, 50ms", d)
		}
		if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("second Shutdown = %v, want %v", err, context.DeadlineExceeded)
		}
		if p.Submit(fn(func() {})) {
			t.Fatal("Submit after Shutdown succeeded")
		}
		if queuedRan.Load() {
			t.Fatal("queued task ran while the only goroutine was blocked")
		}

		release.open()
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown after release = %v", err)
		}
		if !queuedRan.Load() {
			t.Fatal("queued task did not run before Shutdown returned nil")
		}
		if p.Running() != 0 {
			t.Fatalf("%d goroutines counted after Shutdown", p.Running())
		}
	})
}

// Close and Shutdown called concurrently all wait for the same drain.
func TestCloseConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Max: 4, Min: 1})
		release := newGate()
		defer p.Close()
		defer release.open() // a failing test still lets the pool drain
		var ran atomic.Int32
		for range 20 {
			p.Submit(fn(func() { release.wait(); ran.Add(1) }))
		}
		var wg sync.WaitGroup
		var returned atomic.Int32
		for i := range 8 {
			wg.Go(func() {
				if i%2 == 0 {
					p.Close()
				} else if err := p.Shutdown(context.Background()); err != nil {
					t.Errorf("Shutdown = %v", err)
				}
				if ran.Load() != 20 {
					t.Errorf("Close returned after %d of 20 tasks", ran.Load())
				}
				returned.Add(1)
			})
		}
		synctest.Wait()
		if n := returned.Load(); n != 0 {
			t.Fatalf("%d Close/Shutdown calls returned while tasks block", n)
		}
		release.open()
		wg.Wait()
		p.Close()
	})
}

// Close and Shutdown of a pool that never ran a task return at once, even
// with a context already done.
func TestCloseUnused(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := New(Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown of an idle pool = %v", err)
	}
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	within(t, 5*time.Second, closed, "Close of an unused pool")
	if p.Submit(fn(func() {})) {
		t.Fatal("Submit after Close succeeded")
	}
}

// Submit allocates nothing when it hands the task to a waiting goroutine
// or queues it (Max is 1, so it never starts a second goroutine).
func TestSubmitDoesNotAllocate(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := New(Config{Max: 1})
	defer p.Close()
	done := make(chan struct{}, 1)
	task := fn(func() { done <- struct{}{} })
	allocs := testing.AllocsPerRun(1000, func() {
		if !p.Submit(task) {
			t.Fatal("Submit refused")
		}
		<-done
	})
	if allocs != 0 {
		t.Fatalf("Submit allocates %v times per call, want 0", allocs)
	}
}

// BenchmarkSubmit is one Submit and its task run, end to end.
func BenchmarkSubmit(b *testing.B) {
	p := New(Config{})
	defer p.Close()
	var wg sync.WaitGroup
	t := fn(func() { wg.Done() })
	b.ReportAllocs()
	for b.Loop() {
		wg.Add(1)
		for !p.Submit(t) {
		}
		wg.Wait()
	}
}

// BenchmarkSubmitParallel is BenchmarkSubmit from GOMAXPROCS submitters at
// once, contending for the pool's accounting.
func BenchmarkSubmitParallel(b *testing.B) {
	p := New(Config{})
	defer p.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		done := make(chan struct{}, 1)
		t := fn(func() { done <- struct{}{} })
		for pb.Next() {
			for !p.Submit(t) {
			}
			<-done
		}
	})
}

// BenchmarkSubmitBatch submits tasks 256 at a time and waits for each
// batch: the cost per task when bursts outrun the goroutines. With a high
// Max the burst is spread over many goroutines, each woken for one task.
func BenchmarkSubmitBatch(b *testing.B) {
	const batch = 256
	for _, maxG := range []int{4, 1024} {
		b.Run(fmt.Sprintf("Max=%d", maxG), func(b *testing.B) {
			p := New(Config{Max: maxG})
			defer p.Close()
			var wg sync.WaitGroup
			t := fn(func() { wg.Done() })
			b.ReportAllocs()
			for b.Loop() {
				wg.Add(batch)
				for range batch {
					for !p.Submit(t) {
					}
				}
				wg.Wait()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/task")
		})
	}
}
