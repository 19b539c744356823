package conn

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hawser-rpc/hawser/codec"
)

// callCtx is a handler's context: the deadline from the CALL, cancelled by
// CANCEL, by the connection closing, or when the call ends. It costs one
// allocation per call, which also holds the handler's Request: neither is
// recycled, so a handler that keeps them past its return reaches a dead
// call, never another one. Its Done channel and deadline timer are made
// only if the handler asks for Done, and derived contexts attach through
// AfterFunc without a goroutine.
type callCtx struct {
	conn     *Conn
	deadline time.Time // zero: none
	req      Request

	mu     sync.Mutex
	done   chan struct{}
	err    error
	dead   atomic.Bool // err is set: Err may read it without mu
	timer  *time.Timer
	afters map[*afterFunc]struct{}
}

type afterFunc struct{ f func() }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func newCallCtx(c *Conn, arg uint32) *callCtx {
	x := &callCtx{conn: c}
	if d := codec.ArgDeadline(arg); d > 0 {
		x.deadline = time.Now().Add(d)
	}
	return x
}

func (x *callCtx) Deadline() (time.Time, bool) { return x.deadline, !x.deadline.IsZero() }

func (x *callCtx) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done == nil {
		x.armLocked()
		if x.err != nil {
			x.done = closedChan
		} else {
			x.done = make(chan struct{})
		}
	}
	return x.done
}

// armLocked starts the deadline timer, once.
func (x *callCtx) armLocked() {
	if x.timer != nil || x.deadline.IsZero() || x.err != nil {
		return
	}
	left := time.Until(x.deadline)
	if left <= 0 {
		x.cancelLocked(context.DeadlineExceeded)
		return
	}
	x.timer = time.AfterFunc(left, func() { x.cancel(context.DeadlineExceeded) })
}

func (x *callCtx) Err() error {
	if x.deadline.IsZero() && !x.dead.Load() {
		return nil // not cancelled, no deadline: the common case, lock-free
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err == nil && !x.deadline.IsZero() && !time.Now().Before(x.deadline) {
		x.cancelLocked(context.DeadlineExceeded)
	}
	return x.err
}

func (x *callCtx) Value(key any) any {
	if key == connKey {
		return x.conn
	}
	return nil
}

// AfterFunc lets context.AfterFunc and contexts derived from this one
// (context.WithCancel, WithTimeout) attach without a watcher goroutine.
func (x *callCtx) AfterFunc(f func()) (stop func() bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err != nil {
		go f()
		return func() bool { return false }
	}
	x.armLocked()
	a := &afterFunc{f: f}
	if x.afters == nil {
		x.afters = make(map[*afterFunc]struct{})
	}
	x.afters[a] = struct{}{}
	return func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		_, ok := x.afters[a]
		delete(x.afters, a)
		return ok
	}
}

func (x *callCtx) cancel(err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.cancelLocked(err)
}

func (x *callCtx) cancelLocked(err error) {
	if x.err != nil {
		return
	}
	x.err = err
	x.dead.Store(true)
	if x.done != nil && x.done != closedChan {
		close(x.done)
	}
	if x.timer != nil {
		x.timer.Stop()
	}
	for a := range x.afters {
		go a.f()
	}
	x.afters = nil
}

type ctxKey struct{}

var connKey ctxKey

// FromContext returns the connection a handler's call arrived on.
func FromContext(ctx context.Context) (*Conn, bool) {
	c, ok := ctx.Value(connKey).(*Conn)
	return c, ok
}
