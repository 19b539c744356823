package workers

import (
	"context"
	"sync/atomic"
	"time"
)

// Task is a unit of work.
type Task interface{ Run() }

// Config sizes a Pool. Zero values mean the defaults.
type Config struct {
	// Max is the most goroutines running tasks at once. Default 1024;
	// values above 1<<24 are clamped to it.
	Max int
	// Queue is how many tasks may wait for a goroutine once Max run.
	// Default 4096; values above 1<<24 are clamped to it.
	Queue int
	// Min goroutines stay even when idle. Default 4; at most Max.
	Min int
	// IdleTimeout is how long a goroutine above Min waits for work before
	// it exits. Default 10s.
	IdleTimeout time.Duration
}

// maxSize bounds Max and Queue so that the fields of Pool.state cannot
// overflow into each other.
const maxSize = 1 << 24

// Pool.state packs the whole accounting into one word so that Submit, a
// retiring goroutine and Close decide on the same snapshot with one CAS:
//
//	bit 63      closed: Submit refuses, goroutines drain the queue and exit
//	bits 32-62  running: goroutines started and not counted out
//	bits 0-31   free + freeBias
//
// free is the number of goroutines waiting for a task minus the number of
// tasks handed to the queue and not yet received. A goroutine adds one
// when it starts to wait; receiving a task changes nothing (one waiter and
// one task fewer); a Submit that finds free > 0 claims a waiter by
// subtracting one and only then sends; a goroutine may stop waiting
// without a task (retire, or exit after Close) only by subtracting one
// while free > 0. Hence:
//
//   - free >= 0: every task in the queue has a waiting goroutine that has
//     not been claimed by another task, so none is stranded.
//   - free < 0: -free tasks wait for a goroutine. Submit queues such a task
//     only when running == Max, and running falls only by the retire/exit
//     CAS, which needs free > 0; so while tasks wait, Max goroutines run.
//     (In particular a task is never queued while no goroutine runs, so
//     Close never has to start one.)
//   - tasks in the channel <= tasks handed over <= waiters + Queue <=
//     Max + Queue, the channel's capacity, so Submit's send never blocks.
//
// The bias keeps free's field non-negative (free is in [-Queue, Max]), so
// adding or subtracting one never borrows from or carries into running.
const (
	freeBias   = 1 << 31
	freeMask   = 1<<32 - 1
	runningOne = 1 << 32
	closedBit  = 1 << 63
)

func freeOf(s uint64) int64    { return int64(s&freeMask) - freeBias }
func runningOf(s uint64) int64 { return int64(s&^closedBit) >> 32 }

// Pool runs tasks on a bounded set of goroutines. Its goroutines are owned
// by the Pool: Close and Shutdown wait for them.
type Pool struct {
	// Immutable after New.
	cfg   Config
	tasks chan Task     // capacity Max+Queue; see state
	quit  chan struct{} // closed once, by whoever sets closedBit
	done  chan struct{} // closed once running is 0 with closedBit set

	state atomic.Uint64 // see the comment above freeBias
}

// New returns a Pool; it starts no goroutine until work arrives.
func New(cfg Config) *Pool {
	if cfg.Max <= 0 {
		cfg.Max = 1024
	}
	cfg.Max = min(cfg.Max, maxSize)
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	cfg.Queue = min(cfg.Queue, maxSize)
	if cfg.Min <= 0 {
		cfg.Min = 4
	}
	cfg.Min = min(cfg.Min, cfg.Max)
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Second
	}
	p := &Pool{
		cfg:   cfg,
		tasks: make(chan Task, cfg.Max+cfg.Queue),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	p.state.Store(freeBias)
	return p
}

// Submit runs t on an idle goroutine, or on a new one while fewer than Max
// run, or queues it behind Max busy goroutines. It never blocks: it
// returns false at once if Queue tasks already wait or the pool is closed.
// It does not allocate unless it starts a goroutine.
func (p *Pool) Submit(t Task) bool {
	for {
		s := p.state.Load()
		switch {
		case s&closedBit != 0:
			return false
		case freeOf(s) > 0:
			// Claim a waiting goroutine; it will receive t or an
			// earlier task, and no other Submit counts on it.
			if p.state.CompareAndSwap(s, s-1) {
				p.tasks <- t // room by the capacity invariant
				return true
			}
		case runningOf(s) < int64(p.cfg.Max):
			if p.state.CompareAndSwap(s, s+runningOne) {
				go p.work(t)
				return true
			}
		case freeOf(s) > -int64(p.cfg.Queue):
			if p.state.CompareAndSwap(s, s-1) {
				p.tasks <- t // room by the capacity invariant
				return true
			}
		default:
			return false
		}
	}
}

// work runs first, then tasks from the queue, until it is counted out by
// leave.
func (p *Pool) work(first Task) {
	timer := time.NewTimer(p.cfg.IdleTimeout)
	defer timer.Stop()
	for t := first; t != nil; t = p.next(timer) {
		t.Run()
	}
}

// next waits for a task. It returns nil once the calling goroutine has
// been counted out of running and must exit.
func (p *Pool) next(timer *time.Timer) Task {
	p.state.Add(1) // waiting: free+1
	// After Close, a goroutine that starts to wait goes straight to drain
	// and takes a task only when one is owed to it; were it to race the
	// others in the select below it could take the task that a goroutine
	// blocked in drain is owed. See drain.
	select {
	case <-p.quit:
		return p.drain()
	default:
	}
	timer.Reset(p.cfg.IdleTimeout)
	for {
		select {
		case t := <-p.tasks:
			return t
		case <-timer.C:
			if p.leave(false) {
				return nil
			}
			// Min run, or a task is owed to the waiters (free <= 0):
			// keep waiting.
			timer.Reset(p.cfg.IdleTimeout)
		case <-p.quit:
			return p.drain()
		}
	}
}

// drain is next after Close: the caller, still counted as waiting, exits
// if no queued task needs it, or else blocks for the task it is owed.
//
// Why the blocking receive cannot hang: a goroutine blocks here only when
// waiters <= tasks owed (free <= 0), itself included. After Close, tasks
// owed only fall, by one per receive; the only other goroutines that can
// receive are those already waiting in next's select when quit closed,
// and each of them receives at most once before it too comes here. So
// the tasks owed are always at least the goroutines blocked here plus
// those still in the select, and every goroutine blocked here receives.
func (p *Pool) drain() Task {
	if p.leave(true) {
		return nil
	}
	return <-p.tasks
}

// leave counts a waiting goroutine out of running if no queued task is
// owed to it (free > 0) and, unless closing, more than Min run. The
// goroutine that brings running to 0 after Close closes done.
func (p *Pool) leave(closing bool) bool {
	for {
		s := p.state.Load()
		if freeOf(s) <= 0 || (!closing && runningOf(s) <= int64(p.cfg.Min)) {
			return false
		}
		ns := s - 1 - runningOne
		if p.state.CompareAndSwap(s, ns) {
			if ns&closedBit != 0 && runningOf(ns) == 0 {
				close(p.done)
			}
			return true
		}
	}
}

// Running is the number of goroutines started and not counted out; a
// goroutine is counted out just before it exits.
func (p *Pool) Running() int { return int(runningOf(p.state.Load())) }

// Close stops taking tasks (Submit returns false from then on), runs every
// task already accepted, and waits for every goroutine to exit. It blocks
// for as long as a task does; use Shutdown to bound the wait. Close and
// Shutdown may be called more than once and concurrently.
func (p *Pool) Close() { _ = p.Shutdown(context.Background()) }

// Shutdown is Close bounded by ctx: if ctx ends before the last goroutine
// exits it returns ctx.Err(), and the goroutines go on in the background
// finishing their current and queued tasks; a later Close or Shutdown
// waits for them again. It returns nil once every goroutine has exited.
func (p *Pool) Shutdown(ctx context.Context) error {
	p.stop()
	select {
	case <-p.done:
		return nil
	default:
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop sets closedBit; the call that sets it closes quit, and done too if
// no goroutine runs. After closedBit, running never rises (Submit refuses),
// so it reaches 0 at most once and done is closed exactly once.
func (p *Pool) stop() {
	for {
		s := p.state.Load()
		if s&closedBit != 0 {
			return
		}
		if p.state.CompareAndSwap(s, s|closedBit) {
			close(p.quit)
			if runningOf(s) == 0 {
				close(p.done)
			}
			return
		}
	}
}
