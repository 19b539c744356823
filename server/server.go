package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/internal/workers"
)

// Server serves registered methods on accepted hawser connections.
type Server struct {
	cfg    Config
	log    *slog.Logger
	routes map[uint64]*conn.Route // immutable once serving
	names  map[uint64]string
	ids    []uint64
	pool   *workers.Pool

	mu      sync.Mutex
	started bool
	ln      net.Listener
	eng     *conn.Engine
	ccfg    *conn.Config // resolved once by New (the certificate files are read there)
	conns   map[*conn.Conn]struct{}
	closing bool
	wg      sync.WaitGroup // accept loop and handshakes
	ready   chan struct{}  // closed when listening
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("server: closed")

// New checks cfg (a certificate and a cluster key are required) and returns
// a Server ready for Handle and Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		routes: map[uint64]*conn.Route{},
		names:  map[uint64]string{},
		conns:  map[*conn.Conn]struct{}{},
		ready:  make(chan struct{}),
	}
	ccfg, err := cfg.connConfig(s)
	if err != nil {
		return nil, err
	}
	ccfg.OnClose = s.forget
	s.ccfg = ccfg
	if len(cfg.ClusterKey) < 16 {
		return nil, errors.New("server: a cluster key of at least 16 bytes is required")
	}
	s.pool = workers.New(workers.Config{Max: cfg.MaxWorkers, Queue: cfg.QueueSize})
	return s, nil
}

// register adds a route; the method table is fixed once Serve starts.
func (s *Server) register(name string, id uint64, r *conn.Route) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("server: %q registered after Serve started", name)
	}
	if other, dup := s.names[id]; dup {
		if other == name {
			return fmt.Errorf("server: %q registered twice", name)
		}
		return fmt.Errorf("server: %q and %q have the same method ID %#x: rename one", name, other, id)
	}
	s.routes[id], s.names[id] = r, name
	s.ids = append(s.ids, id)
	return nil
}

// Route implements conn.Router.
func (s *Server) Route(method uint64) *conn.Route { return s.routes[method] }

// Methods implements conn.Router.
func (s *Server) Methods() []uint64 { return s.ids }

// Submit implements conn.Router on the bounded worker pool.
func (s *Server) Submit(t conn.Task) bool { return s.pool.Submit(t) }

// Serve listens on the configured address and serves until Shutdown or
// Close (it then returns ErrServerClosed) or a listener error.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("server: Serve called twice")
	}
	s.started = true
	eng, err := conn.NewEngine(conn.EngineConfig{})
	if err != nil {
		s.mu.Unlock()
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.addr())
	if err != nil {
		s.mu.Unlock()
		_ = eng.Close()
		return fmt.Errorf("server: listen: %w", err)
	}
	s.eng, s.ln = eng, ln
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("hawser: serving", "addr", ln.Addr().String(), "methods", len(s.ids))

	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	maxHS := s.cfg.MaxHandshakes
	if maxHS <= 0 {
		maxHS = 256
	}
	handshakes := make(chan struct{}, maxHS)
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("server: accept: %w", err)
		}
		select {
		case handshakes <- struct{}{}:
		default:
			s.log.Warn("hawser: too many handshakes in progress; refusing connection", "remote", nc.RemoteAddr().String())
			_ = nc.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-handshakes }()
			s.accept(nc)
		}()
	}
}

// accept runs the handshake (bounded by Timeout) and tracks the connection.
func (s *Server) accept(nc net.Conn) {
	c, err := conn.Accept(context.Background(), s.eng, nc, s.ccfg)
	if err != nil {
		s.log.Debug("hawser: handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		if s.ccfg.OnError != nil {
			s.ccfg.OnError(nc.RemoteAddr().String(), err)
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-c.Done():
		return
	default:
	}
	if s.closing {
		go func() { _ = c.Close() }()
		return
	}
	s.conns[c] = struct{}{}
}

// forget drops a closed connection (conn.Config.OnClose, on the loop).
func (s *Server) forget(c *conn.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Addr is the listening address once Serve has started (it waits for it).
func (s *Server) Addr() net.Addr {
	<-s.ready
	return s.ln.Addr()
}

// Ready is closed once Serve is listening.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Conns is the number of open connections.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops accepting, sends GOAWAY on every connection, lets calls
// and streams in flight finish, then closes. If ctx ends first it closes
// what is left at once and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	conns := s.stopAccepting()
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.Shutdown(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	var err error
	for e := range errs {
		if e != nil && err == nil {
			err = e
		}
	}
	s.finish(ctx)
	return err
}

// Close closes the listener and every connection at once: calls in flight
// fail on the callers' side with a transport error. It waits for handlers
// to return.
func (s *Server) Close() error {
	for _, c := range s.stopAccepting() {
		_ = c.Close()
	}
	s.finish(context.Background())
	return nil
}

func (s *Server) stopAccepting() []*conn.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	if s.ln != nil {
		_ = s.ln.Close()
	}
	out := make([]*conn.Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// finish waits for handshakes, stops the loops, the handlers and the pool.
func (s *Server) finish(ctx context.Context) {
	s.wg.Wait()
	s.mu.Lock()
	eng := s.eng
	s.eng = nil
	s.mu.Unlock()
	var conns []*conn.Conn
	s.mu.Lock()
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if eng != nil {
		_ = eng.Close()
	}
	for _, c := range conns {
		_ = c.Wait(ctx)
	}
	s.pool.Close()
}
