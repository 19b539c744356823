package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/conn"
)

// ObservableConfig bounds what one client connection's observables and
// futures may hold on the server (PROTOCOL.md §12).
type ObservableConfig struct {
	// BufferBytes bounds, per connection, the items that producers of
	// OverflowKick observables and futures have made and the connection
	// has not yet sent (its streams' windows are full, or the client has
	// not subscribed yet): the memory of the chunks that hold them (see
	// itemqueue.go; an item costs its length plus at most 10 bytes, in
	// chunks of 1 to 32 KiB, and a subscription keeps one emptied chunk
	// for reuse). A producer whose item would exceed it gets hawser.ErrSlowConsumer, and
	// the connection is closed with a GOAWAY carrying that error, freeing
	// everything it held. Default 8 MiB.
	BufferBytes int
	// Overflow is the policy of observables that leave it to the server
	// (hawser.OverflowServer). Default hawser.OverflowKick.
	Overflow hawser.Overflow
	// MaxSubscriptions bounds the observables and futures one connection
	// holds at once, subscribed or not; a handler's reply that would exceed
	// it fails with hawser.ErrTooManySubscriptions. Default 1024.
	MaxSubscriptions int
}

const (
	DefaultObservableBuffer = 8 << 20
	DefaultMaxSubscriptions = 1024
)

func (c ObservableConfig) withDefaults() ObservableConfig {
	if c.BufferBytes <= 0 {
		c.BufferBytes = DefaultObservableBuffer
	}
	if c.Overflow == hawser.OverflowServer {
		c.Overflow = hawser.OverflowKick
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = DefaultMaxSubscriptions
	}
	return c
}

// ObservableStats counts what the server's connections hold for their
// clients' observables and futures.
type ObservableStats struct {
	// Subscriptions are the observables and futures exported and not yet
	// ended, freed or cancelled; Claimed are those a client subscribed to.
	Subscriptions, Claimed int
	// Producers are producer goroutines still running.
	Producers int
	// Buffered is the bytes charged to buffers (BufferBytes) now;
	// PeakBuffered the most one connection's buffer has held.
	Buffered, PeakBuffered int64
	// Kicked counts connections closed with hawser.ErrSlowConsumer.
	Kicked int64
}

// Observables returns the server's counts.
func (s *Server) Observables() ObservableStats {
	s.mu.Lock()
	tables := make([]*pubTable, 0, len(s.pubs))
	for _, t := range s.pubs {
		tables = append(tables, t)
	}
	s.mu.Unlock()
	st := ObservableStats{Producers: int(s.producers.Load()), Kicked: s.kicked.Load(), PeakBuffered: s.peakBuffered.Load()}
	for _, t := range tables {
		t.mu.Lock()
		st.Subscriptions += len(t.subs)
		for _, p := range t.subs {
			if p.isClaimed() {
				st.Claimed++
			}
		}
		t.mu.Unlock()
		st.Buffered += t.buffered.Load()
	}
	return st
}

// pubTable is one connection's exported observables and futures.
type pubTable struct {
	s      *Server
	c      *conn.Conn
	cfg    ObservableConfig
	kicked atomic.Bool

	buffered atomic.Int64

	mu     sync.Mutex
	next   uint64
	subs   map[uint64]*pub
	closed bool
}

// exporterFor returns the Exporter of the connection a handler's ctx
// belongs to, or nil outside a connection.
func (s *Server) exporterFor(ctx context.Context) hawser.Exporter {
	c, ok := conn.FromContext(ctx)
	if !ok {
		return nil
	}
	return &exporter{s: s, c: c}
}

// exporter makes its connection's table on first use, so that connections
// whose handlers return no handle cost nothing.
type exporter struct {
	s      *Server
	c      *conn.Conn
	t      *pubTable
	parent *pub
}

func (e *exporter) table() (*pubTable, error) {
	if e.t != nil {
		return e.t, nil
	}
	s := e.s
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-e.c.Done():
		return nil, errConnGone
	default:
	}
	t := s.pubs[e.c]
	if t == nil {
		// forget (OnClose) runs after Done is closed, under s.mu: it
		// will find this table and close it.
		t = &pubTable{s: s, c: e.c, cfg: s.cfg.Observables.withDefaults(), subs: map[uint64]*pub{}}
		s.pubs[e.c] = t
	}
	e.t = t
	return t, nil
}

var errConnGone = errors.New("server: the connection closed")

func (e *exporter) Export(p *hawser.Publication) (uint64, error) {
	t, err := e.table()
	if err != nil {
		return 0, err
	}
	policy := p.Overflow
	if policy == hawser.OverflowServer {
		policy = t.cfg.Overflow
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	sp := &pub{t: t, kind: p.Kind, policy: policy, parent: e.parent, ctx: ctx, cancel: cancel,
		notify: make(chan struct{}, 1), claimed: make(chan struct{}), ended: make(chan struct{})}
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		cancel(errConnGone)
		return 0, errConnGone
	case len(t.subs) >= t.cfg.MaxSubscriptions:
		t.mu.Unlock()
		cancel(hawser.ErrTooManySubscriptions)
		return 0, hawser.ErrTooManySubscriptions
	}
	t.next++
	sp.id = t.next
	t.subs[sp.id] = sp
	t.mu.Unlock()

	s := t.s
	s.producers.Add(1)
	child := &exporter{s: s, c: t.c, t: t, parent: sp}
	s.Go(func() {
		defer s.producers.Add(-1)
		err := runProducer(ctx, p, child, sp.send)
		sp.finish(err)
	})
	return sp.id, nil
}

// runProducer runs a publication's producer, turning a panic into an
// error for the client (as for handlers).
func runProducer(ctx context.Context, p *hawser.Publication, ex hawser.Exporter, send func([]byte) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("server: an observable's producer panicked: %v", r)
		}
	}()
	return p.Run(ctx, ex, send)
}

func (e *exporter) Drop(id uint64) {
	t, err := e.table()
	if err != nil {
		return
	}
	t.mu.Lock()
	sp := t.subs[id]
	if sp != nil && sp.isClaimed() {
		sp = nil
	}
	t.mu.Unlock()
	if sp != nil {
		t.remove(sp, errDropped)
	}
}

var (
	errDropped      = errors.New("server: the value holding this observable was not sent")
	errUnsubscribed = errors.New("server: the client unsubscribed")
)

// pub is one exported observable or future.
type pub struct {
	t      *pubTable
	id     uint64
	kind   hawser.HandleKind
	policy hawser.Overflow
	parent *pub
	ctx    context.Context // the producer's
	cancel context.CancelCauseFunc

	notify  chan struct{} // cap 1: an item was queued, or the producer ended
	claimed chan struct{} // closed when the client subscribes
	ended   chan struct{} // closed when the producer returns

	mu      sync.Mutex
	ss      *conn.ServerStream // set when claimed
	isClaim bool
	queue   itemQueue
	stopped bool
	err     error // the producer's result, once ended
}

func (p *pub) isClaimed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.isClaim
}

// send is the producer's: it queues item (kick) or sends it on the
// subscribed stream (block).
func (p *pub) send(item []byte) error {
	if err := p.ctx.Err(); err != nil {
		return context.Cause(p.ctx)
	}
	if p.policy == hawser.OverflowBlock {
		select {
		case <-p.claimed:
		case <-p.ctx.Done():
			return context.Cause(p.ctx)
		}
		p.mu.Lock()
		ss := p.ss
		p.mu.Unlock()
		return ss.Send(item)
	}
	t := p.t
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return context.Cause(p.ctx)
	}
	size := p.queue.room(item)
	if size > 0 {
		n := t.buffered.Add(int64(size))
		if n > int64(t.cfg.BufferBytes) {
			t.buffered.Add(-int64(size))
			p.mu.Unlock()
			t.kick()
			return hawser.ErrSlowConsumer
		}
		for peak := t.s.peakBuffered.Load(); n > peak && !t.s.peakBuffered.CompareAndSwap(peak, n); {
			peak = t.s.peakBuffered.Load()
		}
	}
	p.queue.push(item, size)
	p.mu.Unlock()
	p.signal()
	return nil
}

func (p *pub) signal() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// finish records the producer's result.
func (p *pub) finish(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
	close(p.ended)
	p.signal()
}

// stop cancels the producer and frees what it queued; once.
func (p *pub) stop(cause error) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	q := p.queue.reset()
	p.mu.Unlock()
	p.t.buffered.Add(-q)
	p.cancel(cause)
}

// pop takes the next queued item, valid until the next pop.
func (p *pub) pop() ([]byte, bool) {
	p.mu.Lock()
	b, ok, freed := p.queue.pop()
	p.mu.Unlock()
	if freed > 0 {
		p.t.buffered.Add(-freed)
	}
	return b, ok
}

// kick disconnects the client whose buffer is full: once.
func (t *pubTable) kick() {
	if !t.kicked.CompareAndSwap(false, true) {
		return
	}
	t.s.kicked.Add(1)
	t.s.log.Warn("hawser: disconnecting a client that fell behind its observables",
		"user", t.c.User(), "remote", t.c.RemoteAddr(), "buffer_bytes", t.cfg.BufferBytes)
	t.c.Kick(hawser.ErrSlowConsumer)
	t.close(hawser.ErrSlowConsumer)
}

// close frees every publication of the connection (it closed, or was
// kicked).
func (t *pubTable) close(cause error) {
	t.mu.Lock()
	t.closed = true
	subs := t.subs
	t.subs = map[uint64]*pub{}
	t.mu.Unlock()
	for _, p := range subs {
		p.stop(cause)
	}
}

// remove frees p. A cancelled p (not a normal end) also frees the
// children it exported that no subscription took: their references were
// in its items, which the client will not read now.
func (t *pubTable) remove(p *pub, cause error) {
	t.mu.Lock()
	if t.subs[p.id] == p {
		delete(t.subs, p.id)
	}
	var orphans []*pub
	if cause != nil {
		for _, q := range t.subs {
			if q.parent == p && !q.isClaimed() {
				orphans = append(orphans, q)
			}
		}
	}
	t.mu.Unlock()
	p.stop(cause)
	for _, q := range orphans {
		t.remove(q, cause)
	}
}

// claim gives p to the subscription stream ss, once.
func (t *pubTable) claim(id uint64, ss *conn.ServerStream) *pub {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.subs[id]
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isClaim {
		return nil
	}
	p.isClaim, p.ss = true, ss
	close(p.claimed)
	return p
}

// forgetPubsLocked takes a closed connection's table out of s.pubs
// (OnClose, s.mu held); the caller closes it.
func (s *Server) forgetPubsLocked(c *conn.Conn) *pubTable {
	t := s.pubs[c]
	delete(s.pubs, c)
	return t
}

// registerSubscribe serves hawser.subscribe: the stream a client takes an
// exported observable or future through.
func (s *Server) registerSubscribe() {
	// A subscription cancelled before its handler ran still frees the
	// publication it names.
	r := &conn.Route{Stream: s.subscribe, RunCancelled: true}
	s.routes[hawser.SubscribeID], s.names[hawser.SubscribeID] = r, hawser.SubscribeMethod
	s.ids = append(s.ids, hawser.SubscribeID)
}

var errBadSubscribe = &decodeError{errors.New("hawser.subscribe: the request is not one uvarint ID")}

func (s *Server) subscribe(ctx context.Context, req *conn.Request, ss *conn.ServerStream) error {
	id, n := binary.Uvarint(req.Payload)
	if n <= 0 || n != len(req.Payload) {
		return errBadSubscribe
	}
	s.mu.Lock()
	t := s.pubs[req.Conn()]
	s.mu.Unlock()
	if t == nil {
		return hawser.ErrUnknownSubscription
	}
	p := t.claim(id, ss)
	if p == nil {
		return hawser.ErrUnknownSubscription
	}
	// However the stream ends, the publication goes with it: a normal end
	// after the producer's last item, or an unsubscription (CANCEL, the
	// connection closing), which also cancels the producer.
	cause := errUnsubscribed
	defer func() { t.remove(p, cause) }()
	if p.policy == hawser.OverflowBlock {
		select {
		case <-p.ended:
			cause = nil
			return p.result()
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-p.ctx.Done():
			return context.Cause(p.ctx)
		}
	}
	for {
		if b, ok := p.pop(); ok {
			if err := ss.Send(b); err != nil {
				return err
			}
			continue
		}
		select {
		case <-p.ended:
			if !p.isEmpty() {
				continue
			}
			cause = nil
			return p.result()
		default:
		}
		select {
		case <-p.notify:
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-p.ctx.Done():
			return context.Cause(p.ctx)
		}
	}
}

func (p *pub) result() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *pub) isEmpty() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue.empty()
}
