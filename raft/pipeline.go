package raft

import (
	"context"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/hawser-rpc/hawser/conn"
)

// AppendEntriesPipeline returns a pipeline of AppendEntries to target on
// one connection: requests go out without waiting for earlier responses,
// at most MaxPipeline calls and MaxPipelineBytes in flight; the follower
// serves them one at a time in arrival order (ModeOrdered), and responses
// reach Consumer in send order. Every call has its own deadline (Timeout),
// so a follower that stops answering fails the pipeline within Timeout.
func (t *Transport) AppendEntriesPipeline(id hraft.ServerID, target hraft.ServerAddress) (hraft.AppendPipeline, error) {
	if t.isClosed() {
		return nil, hraft.ErrTransportShutdown
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.Timeout)
	c, err := t.bulkConnTo(ctx, t.peer(id, target))
	cancel()
	if err != nil {
		return nil, t.callErr("AppendEntriesPipeline", target, err)
	}
	p := &pipeline{
		t:      t,
		c:      c,
		target: target,
		slots:  make(chan struct{}, t.cfg.MaxPipeline),
		done:   make(chan hraft.AppendFuture, t.cfg.MaxPipeline),
		room:   make(chan struct{}, 1),
	}
	p.ctx, p.cancel = context.WithCancel(t.ctx)
	t.mu.Lock()
	if t.isClosed() {
		t.mu.Unlock()
		p.cancel()
		return nil, hraft.ErrTransportShutdown
	}
	t.pipelines[p] = struct{}{}
	t.mu.Unlock()
	return p, nil
}

// pipeline is one AppendPipeline.
type pipeline struct {
	// Immutable.
	t      *Transport
	c      *conn.Conn
	target hraft.ServerAddress
	// ctx ends at Close (or the transport's): waits end and calls in flight
	// are cancelled.
	ctx    context.Context
	cancel context.CancelFunc

	// slots holds a token per call sent and not yet handed to Consumer
	// (MaxPipeline).
	slots chan struct{}
	// done is Consumer. Calls complete on the connection's goroutines (the
	// event loop, usually) and are handed on from there in send order,
	// without a goroutine of the pipeline's own: one wake-up less per
	// append (see handOnLocked).
	done chan hraft.AppendFuture
	// room is signalled when bytes in flight fall.
	room chan struct{}

	sendMu sync.Mutex // serializes AppendEntries (send order is queue order)
	mu     sync.Mutex
	queue  []*appendFuture // guarded by mu: sent, not yet handed on, in send order
	// backlog holds completed calls waiting for room in Consumer, in order;
	// backlogging is set while feed runs. Both guarded by mu.
	backlog     []*appendFuture
	backlogging bool
	bytes       int  // guarded by mu: request bytes in flight
	closed      bool // guarded by mu
}

// AppendEntries sends args on the pipeline and returns its future, after
// waiting, at most Timeout, for room in the window.
func (p *pipeline) AppendEntries(args *hraft.AppendEntriesRequest, resp *hraft.AppendEntriesResponse) (hraft.AppendFuture, error) {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if p.ctx.Err() != nil {
		return nil, hraft.ErrPipelineShutdown
	}
	buf := getBuf()
	defer putBuf(buf)
	*buf = appendAppendEntriesRequest((*buf)[:0], args)
	size := len(*buf)

	timer := time.NewTimer(p.t.cfg.Timeout)
	defer timer.Stop()
	select {
	case p.slots <- struct{}{}:
	case <-p.ctx.Done():
		return nil, hraft.ErrPipelineShutdown
	case <-timer.C:
		return nil, p.t.callErr("AppendEntries", p.target, errWindowTimeout)
	}
	for {
		p.mu.Lock()
		if p.bytes == 0 || p.bytes+size <= p.t.cfg.MaxPipelineBytes {
			p.bytes += size
			p.mu.Unlock()
			break
		}
		p.mu.Unlock()
		select {
		case <-p.room:
		case <-p.ctx.Done():
			<-p.slots
			return nil, hraft.ErrPipelineShutdown
		case <-timer.C:
			<-p.slots
			return nil, p.t.callErr("AppendEntries", p.target, errWindowTimeout)
		}
	}
	f := &appendFuture{start: time.Now(), args: args, resp: resp, size: size, done: make(chan struct{})}
	var ctx context.Context
	ctx, f.cancel = context.WithTimeout(p.ctx, p.t.cfg.Timeout)
	p.mu.Lock()
	p.queue = append(p.queue, f) // before the call: it may complete at once
	p.mu.Unlock()
	if _, err := p.c.GoFunc(ctx, mAppend, *buf, f.complete(p)); err != nil {
		f.cancel()
		p.mu.Lock()
		p.queue = p.queue[:len(p.queue)-1] // f is last: sends are serialized
		p.mu.Unlock()
		p.release(size)
		if p.ctx.Err() != nil {
			return nil, hraft.ErrPipelineShutdown
		}
		return nil, p.t.callErr("AppendEntries", p.target, err)
	}
	return f, nil
}

// release gives back a call's slot and bytes.
func (p *pipeline) release(size int) {
	p.mu.Lock()
	p.releaseLocked(size)
	p.mu.Unlock()
}

func (p *pipeline) releaseLocked(size int) {
	p.bytes -= size
	signal(p.room)
	<-p.slots // never blocks: the caller's call holds a token
}

// complete returns the callback of f's call: it decodes the response (or
// keeps the error), then hands on the completed calls at the head of the
// queue. It runs on the connection's goroutines and never blocks.
func (f *appendFuture) complete(p *pipeline) func(*conn.Future) {
	return func(call *conn.Future) {
		b, err := call.Wait() // complete: returns at once
		f.cancel()
		switch {
		case err == nil:
			if b, err = decodeReply(b); err == nil {
				err = decodeAppendEntriesResponse(b, f.resp)
			}
		case p.ctx.Err() != nil:
			err = hraft.ErrPipelineShutdown
		default:
			err = p.t.callErr("AppendEntries", p.target, err)
		}
		f.err = err
		close(f.done)
		p.mu.Lock()
		p.handOnLocked()
		p.mu.Unlock()
	}
}

// handOnLocked moves the completed calls at the head of the queue to
// Consumer, in order, freeing their slots. When Consumer is full (raft's
// reader is behind), the rest go to the backlog, which one goroutine feeds
// to Consumer as raft reads; their slots stay taken meanwhile, so the
// pipeline's sends wait: raft's own pace bounds it, as a blocking send
// would, without a goroutine hop in the common case.
func (p *pipeline) handOnLocked() {
	for len(p.queue) > 0 && isClosed(p.queue[0].done) {
		f := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		if !p.backlogging {
			select {
			case p.done <- f:
				p.releaseLocked(f.size)
				continue
			default:
				if !p.t.spawn(p.feed) {
					p.releaseLocked(f.size) // Close is waiting: nobody reads any more
					continue
				}
				p.backlogging = true
			}
		}
		p.backlog = append(p.backlog, f)
	}
}

// feed hands the backlog to Consumer, waiting for raft to read, until the
// backlog is empty or the pipeline closes.
func (p *pipeline) feed() {
	for {
		p.mu.Lock()
		if len(p.backlog) == 0 {
			p.backlogging = false
			p.mu.Unlock()
			return
		}
		f := p.backlog[0]
		p.backlog[0] = nil
		p.backlog = p.backlog[1:]
		p.mu.Unlock()
		select {
		case p.done <- f:
			p.release(f.size)
		case <-p.ctx.Done():
			p.mu.Lock()
			p.backlog, p.backlogging = nil, false
			p.mu.Unlock()
			return
		}
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Consumer yields the completed futures in send order.
func (p *pipeline) Consumer() <-chan hraft.AppendFuture { return p.done }

// Close cancels the calls in flight and stops the pipeline; a later
// AppendEntries returns ErrPipelineShutdown. It returns promptly.
func (p *pipeline) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.t.mu.Lock()
	delete(p.t.pipelines, p)
	p.t.mu.Unlock()
	return nil
}

// appendFuture is one pipelined AppendEntries.
type appendFuture struct {
	start  time.Time
	args   *hraft.AppendEntriesRequest
	resp   *hraft.AppendEntriesResponse
	size   int
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
}

func (f *appendFuture) Error() error {
	<-f.done
	return f.err
}

func (f *appendFuture) Start() time.Time                       { return f.start }
func (f *appendFuture) Request() *hraft.AppendEntriesRequest   { return f.args }
func (f *appendFuture) Response() *hraft.AppendEntriesResponse { return f.resp }

var errWindowTimeout = errorString("pipeline window did not open in time")

type errorString string

func (e errorString) Error() string { return string(e) }
