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
	c, err := t.peer(id, target).Conn(ctx)
	cancel()
	if err != nil {
		return nil, t.callErr("AppendEntriesPipeline", target, err)
	}
	p := &pipeline{
		t:        t,
		c:        c,
		target:   target,
		slots:    make(chan struct{}, t.cfg.MaxPipeline),
		inflight: make(chan *appendFuture, t.cfg.MaxPipeline),
		done:     make(chan hraft.AppendFuture, t.cfg.MaxPipeline),
		room:     make(chan struct{}, 1),
	}
	p.ctx, p.cancel = context.WithCancel(t.ctx)
	t.mu.Lock()
	if t.isClosed() {
		t.mu.Unlock()
		p.cancel()
		return nil, hraft.ErrTransportShutdown
	}
	t.pipelines[p] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	go p.decode()
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

	// slots holds a token per call in flight (MaxPipeline).
	slots chan struct{}
	// inflight is the calls in send order, for decode.
	inflight chan *appendFuture
	done     chan hraft.AppendFuture
	// room is signalled when bytes in flight fall.
	room chan struct{}

	sendMu sync.Mutex // serializes AppendEntries (send order is queue order)
	mu     sync.Mutex
	bytes  int // guarded by mu: request bytes in flight
	closed bool
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
	call, err := p.c.Go(ctx, mAppend, *buf)
	if err != nil {
		f.cancel()
		p.release(size)
		if p.ctx.Err() != nil {
			return nil, hraft.ErrPipelineShutdown
		}
		return nil, p.t.callErr("AppendEntries", p.target, err)
	}
	f.call = call
	p.inflight <- f // never blocks: a slot is held
	return f, nil
}

// release gives back a call's slot and bytes.
func (p *pipeline) release(size int) {
	p.mu.Lock()
	p.bytes -= size
	p.mu.Unlock()
	signal(p.room)
	<-p.slots
}

// decode completes the calls in send order and hands them to Consumer.
func (p *pipeline) decode() {
	defer p.t.wg.Done()
	for {
		var f *appendFuture
		select {
		case f = <-p.inflight:
		case <-p.ctx.Done():
			p.drain()
			return
		}
		b, err := f.call.Wait()
		f.cancel()
		if err == nil {
			if b, err = decodeReply(b); err == nil {
				err = decodeAppendEntriesResponse(b, f.resp)
			}
		} else {
			if p.ctx.Err() != nil {
				err = hraft.ErrPipelineShutdown
			} else {
				err = p.t.callErr("AppendEntries", p.target, err)
			}
		}
		f.err = err
		close(f.done)
		p.release(f.size)
		select {
		case p.done <- f:
		case <-p.ctx.Done():
			p.drain()
			return
		}
	}
}

// drain fails the calls still queued for decode after Close.
func (p *pipeline) drain() {
	for {
		select {
		case f := <-p.inflight:
			f.call.Cancel()
			f.cancel()
			f.err = hraft.ErrPipelineShutdown
			close(f.done)
		default:
			return
		}
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
	call   *conn.Future
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
