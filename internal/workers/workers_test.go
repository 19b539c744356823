package workers

import (
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
