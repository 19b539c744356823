package server

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/conn"
)

// Client RPC (Config.Auth): permission checks, the platform version query
// and flows.

var (
	platformVersionID = codec.MethodID(hawser.PlatformVersionMethod)
	startFlowID       = codec.MethodID(hawser.StartFlowMethod)
)

// registerBuiltins serves hawser.platformVersion, which needs no
// permission: a user with none can still ask it.
func (s *Server) registerBuiltins() {
	reply := binary.BigEndian.AppendUint32(nil, s.cfg.PlatformVersion)
	r := &conn.Route{Mode: conn.ModeInline, Unary: func(context.Context, *conn.Request) ([]byte, error) {
		return reply, nil
	}}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[platformVersionID], s.names[platformVersionID] = r, hawser.PlatformVersionMethod
	s.ids = append(s.ids, platformVersionID)
}

// guard wraps r with the permission check of a client RPC server: the
// handler runs only if the session's user may call name. startFlow checks
// the flow's own permission instead (RegisterFlow). With a data source
// whose answers may block (a DB), inline handlers run on the pool, so
// that no check waits on the event loop.
func (s *Server) guard(name string, r *conn.Route) *conn.Route {
	if s.cfg.Auth == nil || name == auth.StartFlowMethod {
		return r
	}
	g := *r
	if u := r.Unary; u != nil {
		g.Unary = func(ctx context.Context, req *conn.Request) ([]byte, error) {
			if err := s.checkMethod(ctx, name); err != nil {
				return nil, err
			}
			return u(ctx, req)
		}
	}
	if st := r.Stream; st != nil {
		g.Stream = func(ctx context.Context, req *conn.Request, ss *conn.ServerStream) error {
			if err := s.checkMethod(ctx, name); err != nil {
				return err
			}
			return st(ctx, req, ss)
		}
	}
	if g.Mode == conn.ModeInline && !s.cfg.Auth.Static() {
		g.Mode = conn.ModePool
	}
	return &g
}

func session(ctx context.Context) (*conn.Conn, *auth.Session) {
	c, ok := conn.FromContext(ctx)
	if !ok {
		return nil, nil
	}
	sess, _ := c.Session().(*auth.Session)
	return c, sess
}

func (s *Server) checkMethod(ctx context.Context, name string) error {
	c, sess := session(ctx)
	if sess == nil {
		return hawser.ErrPermissionDenied
	}
	if err := sess.CheckMethod(ctx, name); err != nil {
		s.log.Info("hawser: call denied", "user", sess.User(), "method", name, "remote", c.RemoteAddr())
		return err
	}
	return nil
}

// User returns the username a handler's call was made as, on a client
// RPC server; ok is false on a cluster connection.
func User(ctx context.Context) (name string, ok bool) {
	c, ok := conn.FromContext(ctx)
	if !ok || c.User() == "" {
		return "", false
	}
	return c.User(), true
}

// flowFunc runs a flow on its encoded argument.
type flowFunc func(ctx context.Context, arg []byte) ([]byte, error)

// RegisterFlow registers h as the flow f (Corda's named workflows): clients
// start it with f.Start, through the one method startFlow, whose request
// names the flow. On a client RPC server the user needs StartFlow.<name>,
// InvokeRpc.startFlow or ALL; the check runs before the argument is
// decoded. Flows run on the worker pool. It fails for a name registered
// twice or after Serve started.
func RegisterFlow[Req, Resp any](s *Server, f *hawser.Flow[Req, Resp], h func(ctx context.Context, req Req) (Resp, error)) error {
	holds := hawser.HoldsHandles[Resp]()
	run := func(ctx context.Context, arg []byte) ([]byte, error) {
		req, err := f.DecodeRequest(arg)
		if err != nil {
			return nil, newDecodeError(err)
		}
		resp, err := h(ctx, req)
		if err != nil {
			return nil, err
		}
		if !holds {
			return f.AppendResponse(nil, resp)
		}
		return appendExported(s, ctx, resp, func(dst []byte) ([]byte, error) { return f.AppendResponse(dst, resp) }, nil)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("server: flow %q registered after Serve started", f.Name())
	}
	if _, dup := s.flows[f.Name()]; dup {
		return fmt.Errorf("server: flow %q registered twice", f.Name())
	}
	s.flows[f.Name()] = run
	if _, ok := s.routes[startFlowID]; !ok {
		s.routes[startFlowID], s.names[startFlowID] = &conn.Route{Unary: s.startFlow}, auth.StartFlowMethod
		s.ids = append(s.ids, startFlowID)
	}
	return nil
}

// startFlow serves the startFlow method: uvarint(len(name)) || name ||
// argument (PROTOCOL.md §5.4).
func (s *Server) startFlow(ctx context.Context, req *conn.Request) ([]byte, error) {
	name, arg, err := hawser.ParseStartFlow(req.Payload)
	if err != nil {
		return nil, newDecodeError(err)
	}
	if s.cfg.Auth != nil {
		c, sess := session(ctx)
		if sess == nil {
			return nil, hawser.ErrPermissionDenied
		}
		if err := sess.CheckFlow(ctx, name); err != nil {
			s.log.Info("hawser: flow denied", "user", sess.User(), "flow", name, "remote", c.RemoteAddr())
			return nil, err
		}
	}
	run, ok := s.flows[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", hawser.ErrUnknownFlow, name)
	}
	if len(req.Metadata) > 0 && s.dedup != nil { // after the permission check: a refused start is not kept
		return s.dedup.do(ctx, req, startFlowID, true, func(ctx context.Context, _ *conn.Request) ([]byte, error) {
			return run(ctx, arg)
		})
	}
	return run(ctx, arg)
}
