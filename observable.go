package hawser

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hawser-rpc/hawser/codec"
)

// SubscribeMethod is the stream method a client subscribes to an exported
// observable or future with; its request is the uvarint ID from the
// handle's reference (PROTOCOL.md §12). It needs no permission: IDs are
// per connection, and the method that returned the handle was checked.
const SubscribeMethod = "hawser.subscribe"

// SubscribeID is SubscribeMethod's wire ID.
var SubscribeID = codec.MethodID(SubscribeMethod)

// The CBOR tags of handle references: tag(ID) with a uint ID, in the range
// 0x68770000–0x687700FF that hawser reserves.
const (
	TagObservable = 0x68770001
	TagFuture     = 0x68770002
)

var (
	// ErrSlowConsumer: the server disconnected the client because items
	// produced for it and not yet taken filled its buffer (Overflow kick).
	ErrSlowConsumer = errors.New("hawser: disconnected: the client fell too far behind its observables (its buffer on the server is full)")
	// ErrUnknownSubscription: a subscription to an ID the connection does
	// not hold (already taken, cancelled, or never exported).
	ErrUnknownSubscription = errors.New("hawser: no such observable or future on this connection")
	// ErrTooManySubscriptions: the connection holds as many observables
	// and futures as the server allows.
	ErrTooManySubscriptions = errors.New("hawser: too many observables and futures on this connection")
	// ErrNotExported: a handle encoded outside a server handler's reply
	// or item (handles travel from a server to its client only).
	ErrNotExported = errors.New("hawser: observables and futures can only be sent by a server handler to its client")
	// ErrAlreadySent: a server-side handle sent a second time; each is
	// one subscription.
	ErrAlreadySent = errors.New("hawser: this observable or future was already sent")
	// ErrNotBound: Recv or Get on a handle that did not come from a
	// server through a client connection.
	ErrNotBound = errors.New("hawser: this observable or future was not received from a server")
	// ErrBadReference: malformed handle reference bytes.
	ErrBadReference = errors.New("hawser: malformed observable or future reference")
	// ErrCancelled: Get on a future after Cancel.
	ErrCancelled = errors.New("hawser: future cancelled")
)

func init() {
	RegisterError("hawser.SlowConsumer", codec.CodeResourceExhausted, ErrSlowConsumer)
	RegisterError("hawser.UnknownSubscription", codec.CodeNotFound, ErrUnknownSubscription)
	RegisterError("hawser.TooManySubscriptions", codec.CodeResourceExhausted, ErrTooManySubscriptions)
}

// Overflow is what a server does when a client does not take an
// observable's items as fast as its producer makes them.
type Overflow uint8

const (
	// OverflowServer uses the server's policy (server.Config.Overflow,
	// whose default is OverflowKick).
	OverflowServer Overflow = iota
	// OverflowKick never slows the producer: items wait in the client's
	// buffer on the server, and a client whose buffer fills is
	// disconnected with ErrSlowConsumer (Corda's rule), freeing all it held.
	OverflowKick
	// OverflowBlock slows the producer: Send blocks while the stream's
	// window (the client's credit) is used up, so nothing is buffered
	// beyond it.
	OverflowBlock
)

func (o Overflow) String() string {
	switch o {
	case OverflowServer:
		return "server"
	case OverflowKick:
		return "kick"
	case OverflowBlock:
		return "block"
	}
	return fmt.Sprintf("Overflow(%d)", uint8(o))
}

// ObservableOption changes a server-side observable or future.
type ObservableOption func(*Overflow)

// WithOverflow sets the observable's overflow policy (per method: its
// handler chooses for what it returns).
func WithOverflow(p Overflow) ObservableOption { return func(o *Overflow) { *o = p } }

// Observable is a sequence of values that a server pushes to a client,
// carried as a field of a reply or of an item (of any depth: items may
// hold further observables). Use it as a pointer field, *Observable[T].
//
// On the server, a handler makes one with NewObservable or ObservableOf
// and returns it inside its reply; its producer starts when the reply is
// sent and its context ends when the client unsubscribes or goes away.
//
// On the client, the decoded value is a reader bound to the connection
// that carried it, already subscribed: Recv its items in order, or All;
// Close it when done (or cancel the context of the call that returned
// it). One that is garbage-collected unclosed is unsubscribed, with a
// warning that names the method that returned it.
//
// A handle must not be copied (go vet's copylocks check says so): its
// subscription belongs to one value.
type Observable[T any] struct {
	// server side
	produce  func(ctx context.Context, out Sender[T]) error
	overflow Overflow
	sent     atomic.Bool
	id       uint64

	// client side
	sub *subscription[T]
}

// NewObservable returns an observable whose items produce sends, for a
// server handler to return inside its reply or item. produce runs on its
// own goroutine once the value holding the observable has been sent; it
// must return when ctx ends (Send fails then). Returning nil ends the
// observable; an error reaches the client's Recv.
func NewObservable[T any](produce func(ctx context.Context, out Sender[T]) error, opts ...ObservableOption) *Observable[T] {
	o := &Observable[T]{produce: produce}
	for _, f := range opts {
		f(&o.overflow)
	}
	return o
}

// ObservableOf returns an observable of the values received from ch; it
// ends when ch is closed.
func ObservableOf[T any](ch <-chan T, opts ...ObservableOption) *Observable[T] {
	return NewObservable(func(ctx context.Context, out Sender[T]) error {
		for {
			select {
			case v, ok := <-ch:
				if !ok {
					return nil
				}
				if err := out.Send(v); err != nil {
					return err
				}
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
	}, opts...)
}

func (o *Observable[T]) handleID() uint64 { return o.id }

func (o *Observable[T]) export(ex Exporter) (uint64, error) {
	if o.produce == nil {
		return 0, ErrNotExported
	}
	if !o.sent.CompareAndSwap(false, true) {
		return 0, ErrAlreadySent
	}
	c, err := CodecFor[T]()
	if err != nil {
		return 0, err
	}
	produce := o.produce
	id, err := ex.Export(&Publication{Kind: KindObservable, Overflow: o.overflow,
		Run: func(ctx context.Context, ex Exporter, send func([]byte) error) error {
			return produce(ctx, newPubSender(ex, send, c))
		}})
	if err != nil {
		o.sent.Store(false)
		return 0, err
	}
	o.id = id
	return id, nil
}

func (o *Observable[T]) bind(b *binder) error {
	if o.sub != nil || o.id == 0 {
		return ErrBadReference
	}
	s, err := subscribe[T](b, o.id, "observable")
	if err != nil {
		return err
	}
	o.sub = s
	runtime.AddCleanup(o, (*subscription[T]).leaked, s)
	return nil
}

func (o *Observable[T]) unbind() {
	if o.sub != nil {
		_ = o.sub.close()
	}
}

// Recv returns the next item; io.EOF at the end. Errors are Stream's.
func (o *Observable[T]) Recv() (T, error) {
	if o.sub == nil {
		var zero T
		return zero, ErrNotBound
	}
	v, err := o.sub.recv()
	runtime.KeepAlive(o) // not collected (and unsubscribed) while Recv waits
	return v, err
}

// All yields items until the observable ends; see StreamReader.All.
// Breaking out of the loop closes it.
func (o *Observable[T]) All() iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		if o.sub == nil {
			var zero T
			yield(zero, ErrNotBound)
			return
		}
		defer runtime.KeepAlive(o)
		for it, err := range o.sub.r.All() {
			if !yield(it, err) {
				_ = o.sub.close()
				return
			}
		}
		o.sub.done.Store(true)
	}
}

// Close unsubscribes: the server's producer's context ends within one
// round trip. Items not yet received are dropped.
func (o *Observable[T]) Close() error {
	if o.sub == nil {
		return nil
	}
	return o.sub.close()
}

func (o *Observable[T]) MarshalCBOR() ([]byte, error) { return marshalRef(TagObservable, o.id) }

func (o *Observable[T]) UnmarshalCBOR(b []byte) error {
	id, err := unmarshalRef(TagObservable, b)
	o.id = id
	return err
}

// Future is a value that a server delivers once, later, carried like an
// Observable (as a *Future[T] field). On the server, NewFuture; on the
// client, Get waits for the value and Cancel gives up on it, cancelling
// the server's producer.
type Future[T any] struct {
	compute func(ctx context.Context) (T, error)
	sent    atomic.Bool
	id      uint64

	fut *futureState[T]
}

// NewFuture returns a future whose value compute produces, for a server
// handler to return inside its reply or item. compute runs on its own
// goroutine once the value holding the future has been sent; its ctx ends
// if the client cancels or goes away.
func NewFuture[T any](compute func(ctx context.Context) (T, error)) *Future[T] {
	return &Future[T]{compute: compute}
}

func (f *Future[T]) handleID() uint64 { return f.id }

func (f *Future[T]) export(ex Exporter) (uint64, error) {
	if f.compute == nil {
		return 0, ErrNotExported
	}
	if !f.sent.CompareAndSwap(false, true) {
		return 0, ErrAlreadySent
	}
	c, err := CodecFor[T]()
	if err != nil {
		return 0, err
	}
	compute := f.compute
	id, err := ex.Export(&Publication{Kind: KindFuture, Overflow: OverflowKick,
		Run: func(ctx context.Context, ex Exporter, send func([]byte) error) error {
			v, err := compute(ctx)
			if err != nil {
				return err
			}
			return newPubSender(ex, send, c).Send(v)
		}})
	if err != nil {
		f.sent.Store(false)
		return 0, err
	}
	f.id = id
	return id, nil
}

func (f *Future[T]) bind(b *binder) error {
	if f.fut != nil || f.id == 0 {
		return ErrBadReference
	}
	s, err := subscribe[T](b, f.id, "future")
	if err != nil {
		return err
	}
	st := &futureState[T]{sub: s, ready: make(chan struct{})}
	go st.wait()
	f.fut = st
	runtime.AddCleanup(f, (*futureState[T]).leaked, st)
	return nil
}

func (f *Future[T]) unbind() {
	if f.fut != nil {
		f.fut.cancel()
	}
}

// Get waits for the value, or for ctx. After Cancel it returns
// ErrCancelled.
func (f *Future[T]) Get(ctx context.Context) (T, error) {
	var zero T
	if f.fut == nil {
		return zero, ErrNotBound
	}
	defer runtime.KeepAlive(f) // not collected (and cancelled) while Get waits
	select {
	case <-f.fut.ready:
		return f.fut.v, f.fut.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// Ready is closed once Get would return at once.
func (f *Future[T]) Ready() <-chan struct{} {
	if f.fut == nil {
		return closedReady
	}
	return f.fut.ready
}

var closedReady = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Cancel gives up on the value: the server's producer's context ends
// within one round trip, and Get returns ErrCancelled (unless the value
// had already arrived).
func (f *Future[T]) Cancel() {
	if f.fut != nil {
		f.fut.cancel()
	}
}

func (f *Future[T]) MarshalCBOR() ([]byte, error) { return marshalRef(TagFuture, f.id) }

func (f *Future[T]) UnmarshalCBOR(b []byte) error {
	id, err := unmarshalRef(TagFuture, b)
	f.id = id
	return err
}

// futureState is a bound future; a goroutine takes its one item.
type futureState[T any] struct {
	sub      *subscription[T]
	ready    chan struct{}
	once     sync.Once
	v        T
	err      error
	canceled atomic.Bool
}

func (s *futureState[T]) wait() {
	v, err := s.sub.recv()
	if err == nil {
		// The end follows the value; take it so the stream is released.
		if _, err2 := s.sub.recv(); err2 == nil {
			err = fmt.Errorf("hawser: future of %s sent more than one value", s.sub.name)
		}
	} else if isEOF(err) {
		err = fmt.Errorf("hawser: future of %s ended without a value", s.sub.name)
	}
	if err != nil && s.canceled.Load() {
		err = ErrCancelled
	}
	s.once.Do(func() {
		s.v, s.err = v, err
		close(s.ready)
	})
	s.sub.done.Store(true)
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }

func (s *futureState[T]) cancel() {
	s.canceled.Store(true)
	_ = s.sub.close()
}

func (s *futureState[T]) leaked() {
	select {
	case <-s.ready:
		return
	default:
	}
	s.sub.leaked()
}

// pubSender encodes a server-side handle's items, exporting the handles
// inside them first.
type pubSender[T any] struct {
	ex    Exporter
	send  func([]byte) error
	codec Codec[T]
	holds bool // T may hold handles
	buf   []byte
}

func newPubSender[T any](ex Exporter, send func([]byte) error, c Codec[T]) *pubSender[T] {
	return &pubSender[T]{ex: ex, send: send, codec: c, holds: holdsT[T]()}
}

func (s *pubSender[T]) Send(item T) error {
	if s.holds {
		if err := ExportHandles(s.ex, item); err != nil {
			return err
		}
	}
	b, err := s.codec.Append(s.buf[:0], item)
	if err != nil {
		s.drop(item)
		return fmt.Errorf("hawser: encoding an observable's item: %w", err)
	}
	if cap(b) <= 64<<10 {
		s.buf = b[:0]
	}
	if err := s.send(b); err != nil {
		s.drop(item)
		return err
	}
	return nil
}

func (s *pubSender[T]) drop(item T) {
	if s.holds {
		DropHandles(s.ex, item)
	}
}

// HandleHost is a Caller that says how the handles it delivers report a
// leak (client.Conn implements it): the logger of the warning, and
// whether to record where each handle was received (Corda's
// trackRpcCallSites), which costs a stack walk per handle.
type HandleHost interface {
	HandleLogger() *slog.Logger
	TrackCallSites() bool
}

// binder subscribes the handles of one decoded value.
type binder struct {
	ctx  context.Context
	c    Caller
	name string // the method, stream or flow whose value held them
}

func newBinder(ctx context.Context, c Caller, name string) *binder {
	return &binder{ctx: ctx, c: c, name: name}
}

// subscription is a bound handle's stream on the client.
type subscription[T any] struct {
	r    *StreamReader[T]
	name string // the method that delivered it
	kind string
	site string // where it was received, with TrackCallSites
	log  *slog.Logger
	done atomic.Bool // closed, or ended: no leak to report
}

func subscribe[T any](b *binder, id uint64, kind string) (*subscription[T], error) {
	c, err := CodecFor[T]()
	if err != nil {
		return nil, err
	}
	raw, err := b.c.OpenStream(b.ctx, SubscribeID, binary.AppendUvarint(nil, id))
	if err != nil {
		return nil, err
	}
	s := &subscription[T]{
		r:    &StreamReader[T]{raw: raw, codec: c, name: b.name, ctx: b.ctx, caller: b.c, handles: holdsT[T]()},
		name: b.name,
		kind: kind,
		log:  slog.Default(),
	}
	if h, ok := b.c.(HandleHost); ok {
		if l := h.HandleLogger(); l != nil {
			s.log = l
		}
		if h.TrackCallSites() {
			s.site = callSite()
		}
	}
	return s, nil
}

func (s *subscription[T]) recv() (T, error) {
	v, err := s.r.Recv()
	if err != nil {
		s.done.Store(true)
	}
	return v, err
}

func (s *subscription[T]) close() error {
	s.done.Store(true)
	return s.r.Close()
}

// leaked runs when the handle was garbage-collected: unsubscribe, and
// warn unless it was closed or had ended.
func (s *subscription[T]) leaked() {
	if s.done.Load() {
		return
	}
	attrs := []any{"method", s.name, "kind", s.kind}
	if s.site != "" {
		attrs = append(attrs, "received_at", s.site)
	}
	article := "a "
	if s.kind == "observable" {
		article = "an "
	}
	s.log.Warn("hawser: "+article+s.kind+" was garbage-collected without Close; unsubscribing it", attrs...)
	_ = s.close()
}

// callSite is the stack of the goroutine that received a handle, outside
// hawser's own frames.
func callSite() string {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	var b strings.Builder
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "github.com/hawser-rpc/hawser.") && !strings.HasPrefix(f.Function, "github.com/hawser-rpc/hawser/conn.") {
			if b.Len() > 0 {
				b.WriteString(" <- ")
			}
			fmt.Fprintf(&b, "%s (%s:%d)", f.Function, f.File, f.Line)
			if strings.Count(b.String(), " <- ") >= 4 {
				break
			}
		}
		if !more {
			break
		}
	}
	return b.String()
}

// marshalRef encodes tag(id).
func marshalRef(tag uint32, id uint64) ([]byte, error) {
	if id == 0 {
		return nil, ErrNotExported
	}
	b := make([]byte, 0, 14)
	b = append(b, 0xda)
	b = binary.BigEndian.AppendUint32(b, tag)
	switch {
	case id < 24:
		b = append(b, byte(id))
	case id <= 0xff:
		b = append(b, 0x18, byte(id))
	case id <= 0xffff:
		b = append(b, 0x19)
		b = binary.BigEndian.AppendUint16(b, uint16(id))
	case id <= 0xffffffff:
		b = append(b, 0x1a)
		b = binary.BigEndian.AppendUint32(b, uint32(id))
	default:
		b = append(b, 0x1b)
		b = binary.BigEndian.AppendUint64(b, id)
	}
	return b, nil
}

// unmarshalRef decodes tag(id) strictly: the 4-byte tag head, a uint in its
// shortest form, and nothing after it; id 0 is refused.
func unmarshalRef(tag uint32, b []byte) (uint64, error) {
	if len(b) < 6 || b[0] != 0xda || binary.BigEndian.Uint32(b[1:5]) != tag {
		return 0, ErrBadReference
	}
	b = b[5:]
	var id uint64
	var n int
	switch ai := b[0]; {
	case ai < 24:
		id, n = uint64(ai), 1
	case ai == 0x18 && len(b) >= 2:
		id, n = uint64(b[1]), 2
	case ai == 0x19 && len(b) >= 3:
		id, n = uint64(binary.BigEndian.Uint16(b[1:])), 3
	case ai == 0x1a && len(b) >= 5:
		id, n = uint64(binary.BigEndian.Uint32(b[1:])), 5
	case ai == 0x1b && len(b) >= 9:
		id, n = binary.BigEndian.Uint64(b[1:]), 9
	default:
		return 0, ErrBadReference
	}
	if short, _ := marshalRef(tag, id); n != len(b) || id == 0 || len(short) != 5+n {
		return 0, ErrBadReference
	}
	return id, nil
}
