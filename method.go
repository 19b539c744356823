package hawser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"github.com/hawser-rpc/hawser/codec"
)

// Caller makes raw calls: a *conn.Conn (one connection) or a *pool.Peer (a
// peer behind reconnecting connections) are Callers.
type Caller interface {
	Call(ctx context.Context, method uint64, req []byte, opts ...CallOption) ([]byte, error)
	OpenStream(ctx context.Context, method uint64, req []byte, opts ...CallOption) (RawStream, error)
}

// RawStream is the receiving side of a server-push stream of raw items.
type RawStream interface {
	// Recv returns the next item, which the caller owns; io.EOF at the end.
	Recv() ([]byte, error)
	// Close cancels the stream.
	Close() error
}

// Sender is what a stream handler sends items with.
type Sender[T any] interface {
	Send(item T) error
}

// MethodOption changes a method definition.
type MethodOption func(*methodOptions)

type methodOptions struct {
	urgent         bool
	since          uint32 // Since: the platform version the method needs
	idempotent     bool   // Idempotent (retry.go)
	resubscribable bool   // Resubscribable (retry.go)
}

// UrgentMethod makes every call of the method urgent (see Urgent): for
// small latency-critical calls such as heartbeats.
func UrgentMethod() MethodOption { return func(o *methodOptions) { o.urgent = true } }

// Method is a unary method: one definition shared by client and server.
type Method[Req, Resp any] struct {
	name    string
	id      uint64
	req     Codec[Req]
	resp    Codec[Resp]
	opts    methodOptions
	handles bool // Resp may hold observables or futures
}

// NewMethod defines a unary method. The wire names it by the xxhash64 of
// name, so keep names stable. Req and Resp get CodecFor's codec: []byte as
// it is, the encoding Binary interfaces, or CBOR for any other type (whose
// values may then hold observables and futures). A type with only some of
// the Binary interfaces makes NewMethod panic, since a method definition is
// a package-level declaration: use NewMethodCodec to choose codecs.
func NewMethod[Req, Resp any](name string, opts ...MethodOption) *Method[Req, Resp] {
	rc, err := CodecFor[Req]()
	if err != nil {
		panic(fmt.Sprintf("hawser: method %q request: %v", name, err))
	}
	pc, err := CodecFor[Resp]()
	if err != nil {
		panic(fmt.Sprintf("hawser: method %q response: %v", name, err))
	}
	return NewMethodCodec(name, rc, pc, opts...)
}

// NewMethodCodec defines a unary method with explicit codecs.
func NewMethodCodec[Req, Resp any](name string, req Codec[Req], resp Codec[Resp], opts ...MethodOption) *Method[Req, Resp] {
	m := &Method[Req, Resp]{name: name, id: codec.MethodID(name), req: req, resp: resp, handles: holdsT[Resp]()}
	for _, o := range opts {
		o(&m.opts)
	}
	return m
}

// Name is the method's full name; ID its wire identifier.
func (m *Method[Req, Resp]) Name() string { return m.name }
func (m *Method[Req, Resp]) ID() uint64   { return m.id }

// Since is the platform version the method needs (Since), or 0.
func (m *Method[Req, Resp]) Since() uint32 { return m.opts.since }

// Urgent reports whether the method was defined with UrgentMethod.
func (m *Method[Req, Resp]) Urgent() bool { return m.opts.urgent }

// Call calls the method through c.
func (m *Method[Req, Resp]) Call(ctx context.Context, c Caller, req Req, opts ...CallOption) (Resp, error) {
	var zero Resp
	if err := checkSince(c, m.name, m.opts.since); err != nil {
		return zero, err
	}
	payload, err := m.req.Append(nil, req)
	if err != nil {
		return zero, fmt.Errorf("hawser: encoding %s request: %w", m.name, err)
	}
	if m.opts.urgent {
		opts = append(opts, Urgent())
	}
	opts = m.opts.retryOptions(opts)
	out, err := c.Call(ctx, m.id, payload, opts...)
	if err != nil {
		return zero, err
	}
	resp, err := m.resp.Decode(out)
	if err != nil {
		return zero, fmt.Errorf("hawser: decoding %s reply: %w", m.name, err)
	}
	if m.handles {
		if err := bindHandles(newBinder(ctx, c, m.name), &resp); err != nil {
			return zero, err
		}
	}
	return resp, nil
}

// DecodeRequest and AppendResponse are the server's half of the codecs.
func (m *Method[Req, Resp]) DecodeRequest(b []byte) (Req, error) { return m.req.Decode(b) }
func (m *Method[Req, Resp]) AppendResponse(dst []byte, r Resp) ([]byte, error) {
	return m.resp.Append(dst, r)
}

// Stream is a server-push stream method: one definition shared by client
// and server.
type Stream[Req, Item any] struct {
	name string
	id   uint64
	req  Codec[Req]
	item Codec[Item]
	opts methodOptions
}

// NewStream defines a stream method; see NewMethod for names, codecs and
// options (Since).
func NewStream[Req, Item any](name string, opts ...MethodOption) *Stream[Req, Item] {
	rc, err := CodecFor[Req]()
	if err != nil {
		panic(fmt.Sprintf("hawser: stream %q request: %v", name, err))
	}
	ic, err := CodecFor[Item]()
	if err != nil {
		panic(fmt.Sprintf("hawser: stream %q item: %v", name, err))
	}
	return NewStreamCodec(name, rc, ic, opts...)
}

// NewStreamCodec defines a stream method with explicit codecs.
func NewStreamCodec[Req, Item any](name string, req Codec[Req], item Codec[Item], opts ...MethodOption) *Stream[Req, Item] {
	s := &Stream[Req, Item]{name: name, id: codec.MethodID(name), req: req, item: item}
	for _, o := range opts {
		o(&s.opts)
	}
	return s
}

func (s *Stream[Req, Item]) Name() string { return s.name }
func (s *Stream[Req, Item]) ID() uint64   { return s.id }

// Open opens the stream through c. ctx bounds the whole stream.
func (s *Stream[Req, Item]) Open(ctx context.Context, c Caller, req Req, opts ...CallOption) (*StreamReader[Item], error) {
	if err := checkSince(c, s.name, s.opts.since); err != nil {
		return nil, err
	}
	payload, err := s.req.Append(nil, req)
	if err != nil {
		return nil, fmt.Errorf("hawser: encoding %s request: %w", s.name, err)
	}
	opts = s.opts.retryOptions(opts)
	raw, err := c.OpenStream(ctx, s.id, payload, opts...)
	if err != nil {
		return nil, err
	}
	return &StreamReader[Item]{raw: raw, codec: s.item, name: s.name, ctx: ctx, caller: c, handles: holdsT[Item]()}, nil
}

// DecodeRequest and AppendItem are the server's half of the codecs.
func (s *Stream[Req, Item]) DecodeRequest(b []byte) (Req, error) { return s.req.Decode(b) }
func (s *Stream[Req, Item]) AppendItem(dst []byte, it Item) ([]byte, error) {
	return s.item.Append(dst, it)
}

// StreamReader receives a typed stream. Observables and futures inside
// its items are subscribed as each item is received, bound to the
// stream's context.
type StreamReader[Item any] struct {
	raw     RawStream
	codec   Codec[Item]
	name    string
	ctx     context.Context
	caller  Caller
	handles bool // Item may hold observables or futures
}

// Recv returns the next item; io.EOF at the end of the stream.
func (r *StreamReader[Item]) Recv() (Item, error) {
	var zero Item
	b, err := r.raw.Recv()
	if err != nil {
		return zero, err
	}
	it, err := r.codec.Decode(b)
	if err != nil {
		return zero, fmt.Errorf("hawser: decoding %s item: %w", r.name, err)
	}
	if r.handles {
		if err := bindHandles(newBinder(r.ctx, r.caller, r.name), &it); err != nil {
			return zero, err
		}
	}
	return it, nil
}

// All yields items until the stream ends. A failure is yielded once, with
// the zero item, and ends the iteration; the normal end is not yielded.
// ErrResubscribed (a reconnecting client re-opened the stream) is yielded
// too, and the iteration continues. Breaking out of the loop closes the
// stream.
func (r *StreamReader[Item]) All() iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		for {
			it, err := r.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if !yield(it, err) || (err != nil && !errors.Is(err, ErrResubscribed)) {
				_ = r.raw.Close()
				return
			}
		}
	}
}

// Close cancels the stream.
func (r *StreamReader[Item]) Close() error { return r.raw.Close() }
