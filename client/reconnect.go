package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/conn"
)

// A reconnecting client (after Corda's ReconnectingCordaRPCOps): one
// logged-in connection at a time, replaced when it is lost, with the
// retry rules of hawser.Idempotent, hawser.WithRequestID and
// hawser.Resubscribable for the calls and streams it carried.
//
// Goroutines: one supervisor, which owns the connection (it dials,
// watches, retires and closes it, and calls the listeners), and one per
// retired connection that still drains calls, which closes it when it is
// done. Close stops and waits for all of them. Callers wait on their own
// goroutines, each wait ended by its context, Close or a permanent
// failure.
//
// Lock order: Reconnecting.mu, then resubStream.mu. Neither is held
// while calling into a connection or a listener.

// Backoff is how a Reconnecting waits between failed attempts to
// reconnect. An attempt tries every address once; the first attempt after
// a connection is lost starts at once, and after n failed attempts in a
// row the next waits Delay(n). Zero fields mean Corda's defaults
// (CordaRPCClientConfiguration): 5 s, ×1.5, at most 3 minutes, without
// end.
type Backoff struct {
	// Initial is the wait after the first failed attempt. Default 5 s. A
	// connection that is lost sooner than Initial after its login counts
	// as a failed attempt, so that a server that accepts logins and drops
	// them is not retried in a tight loop.
	Initial time.Duration
	// Multiplier grows the wait after each further failed attempt.
	// Default 1.5; below 1 it is 1 (a constant wait).
	Multiplier float64
	// Max caps the wait. Default 3 minutes.
	Max time.Duration
	// MaxAttempts bounds the failed attempts in a row; when they are
	// exhausted the client stops for good (Done, OnPermanentFailure).
	// Default 0: unlimited.
	MaxAttempts int
	// Jitter, in [0, 1], draws each wait uniformly from
	// [Delay(n)×(1−Jitter), Delay(n)], so that many clients of one
	// restarted server do not log in in lockstep. Default 0: no jitter,
	// Corda's sequence exactly.
	Jitter float64
}

// Backoff defaults (Corda's).
const (
	DefaultBackoffInitial    = 5 * time.Second
	DefaultBackoffMultiplier = 1.5
	DefaultBackoffMax        = 3 * time.Minute
)

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Multiplier == 0 {
		b.Multiplier = DefaultBackoffMultiplier
	}
	b.Multiplier = max(b.Multiplier, 1)
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	b.Max = max(b.Max, b.Initial)
	b.Jitter = min(max(b.Jitter, 0), 1)
	return b
}

// Delay is the wait after n failed attempts in a row (n >= 1), before
// jitter: Initial × Multiplier^(n−1), capped at Max. With the defaults:
// 5 s, 7.5 s, 11.25 s, 16.875 s, … and 3 minutes from the tenth on.
func (b Backoff) Delay(n int) time.Duration {
	b = b.withDefaults()
	d := b.Initial
	for i := 1; i < n && d < b.Max; i++ {
		d = time.Duration(float64(d) * b.Multiplier)
	}
	return min(d, b.Max)
}

// wait is Delay(n) with jitter.
func (b Backoff) wait(n int) time.Duration {
	d := b.Delay(n)
	if j := b.withDefaults().Jitter; j > 0 {
		d -= time.Duration(j * rand.Float64() * float64(d))
	}
	return d
}

// reconnectOptions are the Options only StartReconnecting reads.
type reconnectOptions struct {
	backoff      Backoff
	onDisconnect func(error)
	onReconnect  func(addr string)
	onFailure    func(error)
}

// WithBackoff sets how StartReconnecting's client waits between failed
// attempts (Start ignores it).
func WithBackoff(b Backoff) Option { return func(o *options) { o.reconnect.backoff = b } }

// OnDisconnect calls f with the cause when StartReconnecting's client
// loses its connection (a *hawser.TransportError; its cause is
// conn.ErrGoAway when the server began a graceful shutdown), before it
// reconnects; not when Close closes it. The listeners run one at a time,
// in order, on the client's own goroutine: they must return promptly and
// must not call Close, which waits for that goroutine. Start ignores it.
func OnDisconnect(f func(cause error)) Option {
	return func(o *options) { o.reconnect.onDisconnect = f }
}

// OnReconnect calls f with the address when StartReconnecting's client
// has logged in again after a loss (not for its first connection). See
// OnDisconnect for where listeners run. Start ignores it.
func OnReconnect(f func(addr string)) Option {
	return func(o *options) { o.reconnect.onReconnect = f }
}

// OnPermanentFailure calls f with the client's final error when it
// stops reconnecting for good: its attempts are exhausted
// (Backoff.MaxAttempts) or a login was refused with
// hawser.ErrLoginFailed. Done is closed before f runs. See OnDisconnect
// for where listeners run. Start ignores it.
func OnPermanentFailure(f func(err error)) Option {
	return func(o *options) { o.reconnect.onFailure = f }
}

// ErrClosed is the error of calls through a Reconnecting after Close.
var ErrClosed = errors.New("client: closed")

// ErrGaveUp matches the error of a Reconnecting that stopped
// reconnecting for good (a *GaveUpError).
var ErrGaveUp = errors.New("client: gave up reconnecting")

// GaveUpError says why a Reconnecting stopped for good: Attempts failed
// attempts in a row (Backoff.MaxAttempts), or a login refused with
// hawser.ErrLoginFailed, which retrying would not change (Err matches
// it). Err is the last attempt's error; errors.Is sees through it.
type GaveUpError struct {
	Attempts int
	Err      error
}

func (e *GaveUpError) Error() string {
	return fmt.Sprintf("client: gave up reconnecting after %d failed attempts: %v", e.Attempts, e.Err)
}

func (e *GaveUpError) Unwrap() error        { return e.Err }
func (e *GaveUpError) Is(target error) bool { return target == ErrGaveUp }

// MaybeExecutedError is the error of a call through a Reconnecting that
// was sent, whose connection failed before its outcome arrived, and that
// was not sent again: it is not hawser.Idempotent, and it carries no
// request ID that the server which may have run it still remembers (the
// next connection went to another server or a restarted one, or the
// server's deduplication window has passed). The call may or may not have
// run. It matches hawser.ErrMaybeExecuted, and through Err (a
// *hawser.TransportError) hawser.ErrTransport and the cause.
type MaybeExecutedError struct {
	Err error
}

func (e *MaybeExecutedError) Error() string {
	return "client: the call may have run on the server before its connection failed; not sent again: " + e.Err.Error()
}

func (e *MaybeExecutedError) Unwrap() error        { return e.Err }
func (e *MaybeExecutedError) Is(target error) bool { return target == hawser.ErrMaybeExecuted }

var dedupInfoID = codec.MethodID(hawser.DedupInfoMethod)

// Reconnecting is a client connection that survives the loss of its
// connection: it logs in again, with backoff, to the next address that
// answers, and sends again the calls that are safe to send again. It
// implements hawser.Caller and hawser.PlatformVersioned, like Conn. Safe
// for concurrent use.
//
// Calls made while it is disconnected wait for the reconnect, up to their
// context. A call whose connection fails is sent again on the next
// connection if it provably never reached the server (there was no
// connection, or the server's GOAWAY refused it: conn.ErrGoAway), if it
// is hawser.Idempotent, or if it carries a request ID
// (hawser.WithRequestID) and the next connection reaches the same
// request-ID table within its window (the server announces both with
// hawser.DedupInfoMethod; a restarted server has a new table, whose
// outcomes are gone). Any other call fails with a *MaybeExecutedError:
// Corda's rule, a flow is never started twice. Streams declared
// hawser.Resubscribable are opened again on the next connection and keep
// delivering to their reader, which first gets hawser.ErrResubscribed;
// other streams fail with the transport error.
type Reconnecting struct {
	// Immutable after StartReconnecting.
	addrs              []string
	username, password string
	o                  options
	ctx                context.Context // ended by Close
	cancel             context.CancelFunc
	done               chan struct{}  // closed when the client has stopped for good
	wg                 sync.WaitGroup // the supervisor and the retired connections' closers
	platform           atomic.Uint32  // the last connection's platform version

	mu      sync.Mutex
	cur     *link         // the connection calls use; nil while reconnecting
	gen     uint64        // the generation of the last connection installed
	changed chan struct{} // closed, and replaced, whenever cur changes or the client stops
	err     error         // why the client stopped: a *GaveUpError or ErrClosed
	kick    chan error    // cap 1: a caller saw cur fail; drained by install
	streams map[*resubStream]struct{}
}

// link is one logged-in connection of a Reconnecting.
type link struct {
	c      *Conn
	addr   string
	idx    int           // addrs[idx] is addr
	gen    uint64        // counts from 1 in install order
	up     time.Time     // when it logged in
	table  [16]byte      // the server's request-ID table; zero if none
	window time.Duration // how long that table keeps an outcome
}

// StartReconnecting logs in to the first of addrs that answers (each
// "host:port", a bare host meaning port 7912), trying them in order and,
// if none does, again after Backoff waits, until ctx ends, the attempts
// are exhausted or a login is refused with hawser.ErrLoginFailed (a wrong
// password does not get better by retrying; hawser.ErrLoginLimited is
// retried after the wait). Then it returns a client that reconnects on
// its own when the connection is lost: at once and then after growing
// waits (WithBackoff), to the addresses in turn from the one after the
// lost one, logging in each time with the same credentials and Options as
// Start (TLS, timeout, MinimumPlatformVersion, …). ctx bounds the first
// connection only. Listeners: OnDisconnect, OnReconnect,
// OnPermanentFailure. Close it when done.
func StartReconnecting(ctx context.Context, addrs []string, username, password string, opts ...Option) (*Reconnecting, error) {
	if len(addrs) == 0 {
		return nil, errors.New("client: StartReconnecting needs at least one address")
	}
	o, err := resolve(opts)
	if err != nil {
		return nil, err
	}
	o.reconnect.backoff = o.reconnect.backoff.withDefaults()
	r := &Reconnecting{
		addrs: make([]string, len(addrs)), username: username, password: password, o: o,
		done: make(chan struct{}), changed: make(chan struct{}), kick: make(chan error, 1),
		streams: map[*resubStream]struct{}{},
	}
	for i, a := range addrs {
		r.addrs[i] = withPort(a)
		if err := r.o.check(r.addrs[i]); err != nil {
			return nil, err
		}
	}
	l, err := r.connect(ctx, 0, 0, nil)
	if err != nil {
		return nil, err
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.install(l)
	r.wg.Add(1)
	go r.run(l)
	return r, nil
}

// run is the supervisor: it watches the connection, replaces it when it
// is lost, and stops on Close or a permanent failure.
func (r *Reconnecting) run(l *link) {
	defer r.wg.Done()
	b := r.o.reconnect.backoff
	for {
		cause, draining := r.watch(l)
		r.uninstall(l)
		if r.ctx.Err() != nil {
			_ = l.c.Close()
			r.stop(ErrClosed)
			return
		}
		if draining {
			r.retire(l.c) // its calls in flight may still finish
		} else {
			_ = l.c.Close() // already closed: this releases its engine
		}
		failures := 0
		if time.Since(l.up) < b.Initial {
			failures = 1 // lost at once: wait before the next login
		}
		if f := r.o.reconnect.onDisconnect; f != nil {
			f(cause)
		}
		next, err := r.connect(r.ctx, l.idx+1, failures, cause)
		if err != nil {
			var gave *GaveUpError
			if !errors.As(err, &gave) {
				r.stop(ErrClosed) // Close ended the attempts
				return
			}
			r.stop(err)
			if f := r.o.reconnect.onFailure; f != nil {
				f(err)
			}
			return
		}
		l = next
		r.install(l)
		if f := r.o.reconnect.onReconnect; f != nil {
			f(l.addr)
		}
	}
}

// watch waits until l is lost, or Close. draining reports a connection
// that takes no new call but may still finish the ones in flight.
func (r *Reconnecting) watch(l *link) (cause error, draining bool) {
	lost := func(err error) error { return &hawser.TransportError{Op: "connection", Addr: l.addr, Err: err} }
	select {
	case <-l.c.Done():
		return lost(l.c.Err()), false
	case <-l.c.c.GoingAway():
		return lost(conn.ErrGoAway), true
	case err := <-r.kick:
		select {
		case <-l.c.Done():
			return lost(l.c.Err()), false
		default:
			return err, true
		}
	case <-r.ctx.Done():
		return nil, false
	}
}

// connect makes attempts until one logs in, starting at addrs[start]:
// failures is how many failed attempts are already counted (and last the
// cause), so the first attempt waits if it is not zero. It fails when ctx
// ends, with a *GaveUpError when the attempts are exhausted or a login is
// refused with hawser.ErrLoginFailed.
func (r *Reconnecting) connect(ctx context.Context, start, failures int, last error) (*link, error) {
	b := r.o.reconnect.backoff
	for {
		if failures > 0 {
			if b.MaxAttempts > 0 && failures >= b.MaxAttempts {
				return nil, &GaveUpError{Attempts: failures, Err: last}
			}
			t := time.NewTimer(b.wait(failures))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, attemptsEnded(ctx, last)
			}
		}
		for i := range r.addrs {
			idx := (start + i) % len(r.addrs)
			l, err := r.dial(ctx, idx)
			if err == nil {
				return l, nil
			}
			if ctx.Err() != nil {
				return nil, attemptsEnded(ctx, err)
			}
			last = err
			if errors.Is(err, hawser.ErrLoginFailed) {
				return nil, &GaveUpError{Attempts: failures + 1, Err: err}
			}
		}
		failures++
	}
}

func attemptsEnded(ctx context.Context, last error) error {
	if last == nil {
		return ctx.Err()
	}
	return fmt.Errorf("client: %w; the last attempt: %w", ctx.Err(), last)
}

// dial logs in to addrs[idx] and asks the server's request-ID table.
func (r *Reconnecting) dial(ctx context.Context, idx int) (*link, error) {
	c, err := start(ctx, r.addrs[idx], r.username, r.password, &r.o)
	if err != nil {
		return nil, err
	}
	l := &link{c: c, addr: r.addrs[idx], idx: idx, up: time.Now()}
	if !c.c.Serves(dedupInfoID) {
		return l, nil
	}
	ictx, cancel := context.WithTimeout(ctx, r.o.timeout)
	info, err := c.c.Call(ictx, dedupInfoID, nil)
	cancel()
	switch {
	case errors.Is(err, hawser.ErrTransport) || ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		_ = c.Close()
		return nil, err
	case err == nil && len(info) == 24:
		copy(l.table[:], info[:16])
		l.window = time.Duration(binary.BigEndian.Uint64(info[16:])) * time.Millisecond
	}
	// Otherwise no table is known: calls with a request ID are not sent
	// again after a failure.
	return l, nil
}

// install makes l the connection calls use.
func (r *Reconnecting) install(l *link) {
	r.platform.Store(l.c.PlatformVersion())
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	l.gen = r.gen
	r.cur = l
	select {
	case stale := <-r.kick:
		_ = stale // a report about the previous connection: dropped
	default:
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// uninstall takes l out of use and moves the resubscribable streams on it
// off it (their readers open them again on the next connection).
func (r *Reconnecting) uninstall(l *link) {
	r.mu.Lock()
	r.cur = nil
	close(r.changed)
	r.changed = make(chan struct{})
	streams := make([]*resubStream, 0, len(r.streams))
	for s := range r.streams {
		streams = append(streams, s)
	}
	r.mu.Unlock()
	for _, s := range streams {
		s.detach(l.gen)
	}
}

// retire closes a draining connection once its calls are done, or at
// Close.
func (r *Reconnecting) retire(c *Conn) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		select {
		case <-c.Done():
		case <-r.ctx.Done():
		}
		_ = c.Close()
	}()
}

// stop ends the client for good with err (the first error stays).
func (r *Reconnecting) stop(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.cur = nil
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	close(r.done)
}

// lost reports that a call saw connection gen fail (with a transport
// error), so the supervisor need not wait for Done or GOAWAY to replace
// it (a connection whose call IDs ran out drains without either).
func (r *Reconnecting) lost(gen uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil && r.cur.gen == gen {
		select {
		case r.kick <- err:
		default:
		}
	}
}

// current is the connection calls use now, or nil.
func (r *Reconnecting) current() *link {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

// await returns the connection calls use if it is newer than generation
// after, else waits for one, up to ctx, stop, Close or a permanent
// failure.
func (r *Reconnecting) await(ctx context.Context, after uint64, stop <-chan struct{}) (*link, error) {
	for {
		r.mu.Lock()
		l, err, changed := r.cur, r.err, r.changed
		r.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if l != nil && l.gen > after {
			return l, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-stop:
			return nil, conn.ErrStreamClosed
		}
	}
}

// attempt is what a call through a Reconnecting knows of where it may
// have run.
type attempt struct {
	o     hawser.CallOptions
	sent  *link     // the first connection it may have reached, or nil
	since time.Time // when it was sent there
}

// failed reports whether a call sent on l at sentAt, which failed there
// with err (a transport error), may be sent again on a later connection;
// when only its request ID makes that safe, next checks the connection.
func (a *attempt) failed(l *link, err error, sentAt time.Time) bool {
	if errors.Is(err, conn.ErrGoAway) || a.o.Idempotent {
		return true // refused unprocessed, or safe to run again
	}
	if a.o.RequestID.IsZero() || l.table == ([16]byte{}) {
		return false
	}
	if a.sent == nil {
		a.sent, a.since = l, sentAt
	}
	return a.sent.table == l.table
}

// next reports whether the call may go on l: always, unless a request ID
// is all that makes it safe, and l reaches another table or the window
// of the first one the call may have reached has passed.
func (a *attempt) next(l *link) bool {
	if a.sent == nil || a.o.Idempotent {
		return true
	}
	return l.table == a.sent.table && time.Since(a.since) < a.sent.window
}

// Call makes a raw call (hawser.Caller), waiting for a connection if
// there is none and sending it again after a reconnect when that is safe
// (see Reconnecting).
func (r *Reconnecting) Call(ctx context.Context, method uint64, req []byte, opts ...hawser.CallOption) ([]byte, error) {
	return send(r, ctx, attempt{o: hawser.Apply(opts)}, func(c *Conn) ([]byte, error) {
		return c.Call(ctx, method, req, opts...)
	})
}

// send runs do on the current connection, and again on the next one after
// a transport failure while the rules of Call allow it.
func send[T any](r *Reconnecting, ctx context.Context, a attempt, do func(*Conn) (T, error)) (T, error) {
	var zero T
	var after uint64
	var lastErr error
	for {
		l, err := r.await(ctx, after, nil)
		if err != nil {
			return zero, err
		}
		if !a.next(l) {
			return zero, &MaybeExecutedError{Err: lastErr}
		}
		sentAt := time.Now()
		out, err := do(l.c)
		if err == nil || !errors.Is(err, hawser.ErrTransport) {
			return out, err
		}
		r.lost(l.gen, err)
		if !a.failed(l, err, sentAt) {
			return zero, &MaybeExecutedError{Err: err}
		}
		after, lastErr = l.gen, err
	}
}

// OpenStream opens a raw stream (hawser.Caller). A stream opened with
// hawser.ResubscribableCall (a stream declared hawser.Resubscribable) is
// opened again on the next connection when its connection is lost; its
// Recv then returns hawser.ErrResubscribed once and goes on with the new
// stream's items. Other streams fail with the transport error then; their
// opening is sent again by the rules of Call.
func (r *Reconnecting) OpenStream(ctx context.Context, method uint64, req []byte, opts ...hawser.CallOption) (hawser.RawStream, error) {
	a := attempt{o: hawser.Apply(opts)}
	if a.o.Resubscribable {
		return r.openResubscribable(ctx, method, req, opts)
	}
	return send(r, ctx, a, func(c *Conn) (hawser.RawStream, error) {
		return c.OpenStream(ctx, method, req, opts...)
	})
}

// PlatformVersion is the platform version of the server of the current
// connection, or of the last one while reconnecting
// (hawser.PlatformVersioned).
func (r *Reconnecting) PlatformVersion() uint32 { return r.platform.Load() }

// Addr is the address of the current connection, or "" while
// reconnecting or stopped.
func (r *Reconnecting) Addr() string {
	if l := r.current(); l != nil {
		return l.addr
	}
	return ""
}

// Done is closed when the client has stopped for good: Close, or a
// permanent failure (Err says which).
func (r *Reconnecting) Done() <-chan struct{} { return r.done }

// Err is why the client stopped (a *GaveUpError, or ErrClosed after
// Close), or nil while it runs.
func (r *Reconnecting) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Close closes the connection (calls in flight fail, waiting calls get
// ErrClosed), stops reconnecting and waits for the client's goroutines.
// Listeners are not called for it.
func (r *Reconnecting) Close() error {
	r.cancel()
	r.wg.Wait()
	return nil
}

// resubStream is a resubscribable stream through a Reconnecting: the
// stream on the current connection, replaced by its reader's Recv when
// that connection is lost.
type resubStream struct {
	// Immutable after openResubscribable.
	r      *Reconnecting
	ctx    context.Context
	method uint64
	req    []byte
	opts   []hawser.CallOption
	closed chan struct{} // closed by Close

	mu    sync.Mutex
	raw   hawser.RawStream // the stream on connection gen
	gen   uint64
	moved uint64 // the generation detach took raw off, if it did
	ended bool   // Close was called
}

func (r *Reconnecting) openResubscribable(ctx context.Context, method uint64, req []byte, opts []hawser.CallOption) (hawser.RawStream, error) {
	s := &resubStream{
		r: r, ctx: ctx, method: method,
		req:    append([]byte(nil), req...), // the caller may reuse req; re-opens need it
		opts:   append([]hawser.CallOption(nil), opts...),
		closed: make(chan struct{}),
	}
	raw, l, err := s.open(0)
	if err != nil {
		return nil, err
	}
	s.raw, s.gen = raw, l.gen
	r.mu.Lock()
	if r.err != nil {
		err := r.err
		r.mu.Unlock()
		_ = raw.Close()
		return nil, err
	}
	r.streams[s] = struct{}{}
	stale := r.cur != l // uninstall ran before s was listed
	r.mu.Unlock()
	if stale {
		s.detach(l.gen)
	}
	return s, nil
}

// open opens the stream on the first connection newer than generation
// after that takes it.
func (s *resubStream) open(after uint64) (hawser.RawStream, *link, error) {
	for {
		l, err := s.r.await(s.ctx, after, s.closed)
		if err != nil {
			return nil, nil, err
		}
		raw, err := l.c.OpenStream(s.ctx, s.method, s.req, s.opts...)
		if err == nil {
			return raw, l, nil
		}
		if !errors.Is(err, hawser.ErrTransport) {
			return nil, nil, err
		}
		s.r.lost(l.gen, err)
		after = l.gen
	}
}

// detach takes the stream off connection gen, which is being replaced:
// its reader's Recv opens it on the next one.
func (s *resubStream) detach(gen uint64) {
	s.mu.Lock()
	if s.ended || s.gen != gen {
		s.mu.Unlock()
		return
	}
	s.moved = gen
	raw := s.raw
	s.mu.Unlock()
	_ = raw.Close()
}

// Recv returns the next item; hawser.ErrResubscribed once after each
// re-open; the stream's own end (io.EOF, the handler's error, the
// context's) as it comes; and, when it cannot be re-opened, why (Close,
// a permanent failure, an error opening it).
func (s *resubStream) Recv() ([]byte, error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return nil, conn.ErrStreamClosed
	}
	raw, gen := s.raw, s.gen
	s.mu.Unlock()
	b, err := raw.Recv()
	if err == nil {
		return b, nil
	}
	s.mu.Lock()
	ended, moved := s.ended, s.moved == gen
	s.mu.Unlock()
	switch {
	case ended:
		return nil, conn.ErrStreamClosed
	case !moved && !errors.Is(err, hawser.ErrTransport):
		s.r.forget(s) // the stream's own end
		return nil, err
	}
	if !moved {
		s.r.lost(gen, err)
	}
	nraw, l, err := s.open(gen)
	if err != nil {
		s.r.forget(s)
		return nil, err
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		_ = nraw.Close()
		return nil, conn.ErrStreamClosed
	}
	s.raw, s.gen = nraw, l.gen
	s.mu.Unlock()
	if s.r.current() != l {
		s.detach(l.gen) // replaced meanwhile: the next Recv moves on again
	}
	return nil, hawser.ErrResubscribed
}

// Close cancels the stream.
func (s *resubStream) Close() error {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return nil
	}
	s.ended = true
	close(s.closed)
	raw := s.raw
	s.mu.Unlock()
	s.r.forget(s)
	return raw.Close()
}

// forget drops s from the streams moved at a reconnect.
func (r *Reconnecting) forget(s *resubStream) {
	r.mu.Lock()
	delete(r.streams, s)
	r.mu.Unlock()
}
