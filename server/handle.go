package server

import (
	"context"
	"fmt"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/conn"
)

// Option changes how a handler runs.
type Option func(*conn.Route)

// Inline runs the handler on the event loop, with no goroutine hop. Only
// for handlers that never block (no I/O, no locks held for long, no
// channel waits): a blocked handler stalls every connection on its loop.
func Inline() Option { return func(r *conn.Route) { r.Mode = conn.ModeInline } }

// Ordered runs the handler on a goroutine of the connection, one call at a
// time in arrival order, together with the connection's other Ordered
// methods: no pool hop, and a pipeline of calls gets its replies in send
// order (Raft appends).
func Ordered() Option { return func(r *conn.Route) { r.Mode = conn.ModeOrdered } }

// decodeError is a request the handler's codec refused.
type decodeError struct{ err error }

func (e *decodeError) Error() string        { return "decoding request: " + e.err.Error() }
func (e *decodeError) Unwrap() error        { return e.err }
func (e *decodeError) RPCCode() hawser.Code { return codec.CodeInvalidArgument }

func newDecodeError(err error) *decodeError { return &decodeError{err} }

// Handle registers h for method m. For []byte requests the payload is valid
// only until h returns (copy what you keep); decoded requests are owned by
// h. It fails if the name or its method ID is already registered, or after
// Serve started.
func Handle[Req, Resp any](s *Server, m *hawser.Method[Req, Resp], h func(ctx context.Context, req Req) (Resp, error), opts ...Option) error {
	holds := hawser.HoldsHandles[Resp]()
	r := &conn.Route{Unary: func(ctx context.Context, cr *conn.Request) ([]byte, error) {
		req, err := m.DecodeRequest(cr.Payload)
		if err != nil {
			return nil, newDecodeError(err)
		}
		resp, err := h(ctx, req)
		if err != nil {
			return nil, err
		}
		if !holds {
			return m.AppendResponse(cr.ReplyBuffer(512), resp)
		}
		return appendExported(s, ctx, resp, func(dst []byte) ([]byte, error) { return m.AppendResponse(dst, resp) }, cr.ReplyBuffer(512))
	}}
	for _, o := range opts {
		o(r)
	}
	return s.register(m.Name(), m.ID(), r)
}

// HandleStream registers h for stream st. h sends items with out.Send,
// which blocks while the consumer's window is full and fails once the
// stream is cancelled; h returns nil to end the stream or an error the
// consumer receives. Stream handlers run on their own goroutine.
func HandleStream[Req, Item any](s *Server, st *hawser.Stream[Req, Item], h func(ctx context.Context, req Req, out hawser.Sender[Item]) error) error {
	r := &conn.Route{Stream: func(ctx context.Context, cr *conn.Request, ss *conn.ServerStream) error {
		req, err := st.DecodeRequest(cr.Payload)
		if err != nil {
			return newDecodeError(err)
		}
		out := &sender[Req, Item]{st: st, ss: ss}
		if hawser.HoldsHandles[Item]() {
			out.ex = s.exporterFor(ctx)
		}
		return h(ctx, req, out)
	}}
	return s.register(st.Name(), st.ID(), r)
}

// HandleRaw registers a conn-level route under name: for handlers that want
// the request metadata, Request.Keep or their own reply buffers.
func HandleRaw(s *Server, name string, r *conn.Route) error {
	return s.register(name, codec.MethodID(name), r)
}

type sender[Req, Item any] struct {
	st  *hawser.Stream[Req, Item]
	ss  *conn.ServerStream
	ex  hawser.Exporter // set when items may hold observables or futures
	buf []byte
}

// Send encodes item into the sender's own scratch buffer (raw items go as
// they are: ServerStream.Send copies before it returns).
func (s *sender[Req, Item]) Send(item Item) error {
	if raw, ok := any(item).([]byte); ok {
		return s.ss.Send(raw)
	}
	if s.ex != nil {
		if err := hawser.ExportHandles(s.ex, item); err != nil {
			return fmt.Errorf("server: %s item: %w", s.st.Name(), err)
		}
	}
	b, err := s.st.AppendItem(s.buf[:0], item)
	if err != nil {
		hawser.DropHandles(s.ex, item)
		return fmt.Errorf("server: encoding %s item: %w", s.st.Name(), err)
	}
	if cap(b) <= 64<<10 {
		s.buf = b[:0]
	}
	if err := s.ss.Send(b); err != nil {
		hawser.DropHandles(s.ex, item)
		return err
	}
	return nil
}

// appendExported exports the observables and futures of v to the client
// of ctx's connection, then encodes v with enc; if encoding fails, they
// are dropped.
func appendExported[T any](s *Server, ctx context.Context, v T, enc func(dst []byte) ([]byte, error), dst []byte) ([]byte, error) {
	ex := s.exporterFor(ctx)
	if err := hawser.ExportHandles(ex, v); err != nil {
		return nil, err
	}
	b, err := enc(dst)
	if err != nil {
		hawser.DropHandles(ex, v)
	}
	return b, err
}
