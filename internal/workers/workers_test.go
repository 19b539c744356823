package workers

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

type fn func()

func (f fn) Run() { f() }

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

func TestIdleGoroutinesRetire(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := New(Config{Max: 8, Min: 1, IdleTimeout: 20 * time.Millisecond})
	var wg sync.WaitGroup
	block := make(chan struct{})
	for range 8 {
		wg.Add(1)
		p.Submit(fn(func() { <-block; wg.Done() }))
	}
	close(block)
	wg.Wait()
	if p.Running() < 2 {
		t.Fatalf("only %d goroutines ran 8 blocking tasks", p.Running())
	}
	deadline := time.Now().Add(2 * time.Second)
	for p.Running() > 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if p.Running() != 1 {
		t.Fatalf("%d goroutines left after idling, want Min=1", p.Running())
	}
	p.Close()
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
