package workers

import (
	"sync"
	"sync/atomic"
	"time"
)

// Task is a unit of work.
type Task interface{ Run() }

// Config sizes a Pool. Zero values mean the defaults.
type Config struct {
	// Max is the most goroutines running tasks at once. Default 1024.
	Max int
	// Queue is how many tasks may wait for a goroutine. Default 4096.
	Queue int
	// Min goroutines stay even when idle. Default 4.
	Min int
	// IdleTimeout is how long a goroutine above Min waits for work before
	// it exits. Default 10s.
	IdleTimeout time.Duration
}

// Pool runs tasks on a bounded set of goroutines.
type Pool struct {
	cfg   Config
	tasks chan Task

	running atomic.Int32 // goroutines started and not exited
	idle    atomic.Int32 // goroutines waiting for a task

	mu     sync.RWMutex // guards closed against Submit
	closed bool
	quit   chan struct{}
	wg     sync.WaitGroup
}

// New returns a Pool; it starts no goroutine until work arrives.
func New(cfg Config) *Pool {
	if cfg.Max <= 0 {
		cfg.Max = 1024
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	if cfg.Min <= 0 {
		cfg.Min = 4
	}
	cfg.Min = min(cfg.Min, cfg.Max)
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Second
	}
	return &Pool{cfg: cfg, tasks: make(chan Task, cfg.Queue), quit: make(chan struct{})}
}

// Submit runs t on an idle goroutine, or on a new one while fewer than Max
// run, or queues it. It returns false at once if the queue is full or the
// pool is closed.
func (p *Pool) Submit(t Task) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return false
	}
	if p.idle.Load() > 0 {
		select {
		case p.tasks <- t:
			return true
		default:
		}
	}
	if p.reserve() {
		p.wg.Add(1)
		go p.work(t)
		return true
	}
	select {
	case p.tasks <- t:
		return true
	default:
		return false
	}
}

// reserve counts a new goroutine in if fewer than Max run.
func (p *Pool) reserve() bool {
	for {
		n := p.running.Load()
		if int(n) >= p.cfg.Max {
			return false
		}
		if p.running.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// work runs first, then queued tasks until idle past IdleTimeout (above
// Min) or the pool closes.
func (p *Pool) work(first Task) {
	defer p.wg.Done()
	if first != nil {
		first.Run()
	}
	timer := time.NewTimer(p.cfg.IdleTimeout)
	defer timer.Stop()
	for {
		p.idle.Add(1)
		select {
		case t := <-p.tasks:
			p.idle.Add(-1)
			t.Run()
			timer.Reset(p.cfg.IdleTimeout)
		case <-timer.C:
			p.idle.Add(-1)
			if p.retire() {
				return
			}
			timer.Reset(p.cfg.IdleTimeout)
		case <-p.quit:
			p.idle.Add(-1)
			p.running.Add(-1)
			return
		}
	}
}

// retire lets an idle goroutine exit if more than Min run and nothing is
// queued.
func (p *Pool) retire() bool {
	for {
		n := p.running.Load()
		if int(n) <= p.cfg.Min || len(p.tasks) > 0 {
			return false
		}
		if p.running.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// Running is the number of goroutines started and not exited.
func (p *Pool) Running() int { return int(p.running.Load()) }

// Close stops taking tasks, lets the goroutines run every queued task, and
// waits for them to exit.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	// Run what is queued, starting a goroutine if none is left.
	for len(p.tasks) > 0 {
		if p.running.Load() == 0 && p.reserve() {
			p.wg.Add(1)
			go p.work(nil)
		}
		time.Sleep(time.Millisecond)
	}
	close(p.quit)
	p.wg.Wait()
}
