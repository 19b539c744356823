package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/internal/workers"
)

// Server serves registered methods on accepted hawser connections.
type Server struct {
	cfg    Config
	log    *slog.Logger
	routes map[uint64]*conn.Route // immutable once serving
	names  map[uint64]string
	flows  map[string]flowFunc // immutable once serving
	ids    []uint64
	pool   *workers.Pool
	ccfg   *conn.Config // resolved once by New (the certificate files are read there)
	adm    *admission
	dedup  *dedupTable // the request-ID table (dedup.go); nil when off

	mu        sync.Mutex
	started   bool
	closing   bool
	ln        net.Listener
	eng       *conn.Engine
	conns     map[*conn.Conn]struct{}
	loopDone  chan struct{} // closed when Serve's accept loop has returned
	listenErr error         // why Serve could not listen

	ready     chan struct{} // closed when Serve listens, fails to, or the server closes first
	readyOnce sync.Once
	wg        sync.WaitGroup // admission and handshake goroutines
	handlers  sync.WaitGroup // stream and ordered handler goroutines (Go)

	pubs      map[*conn.Conn]*pubTable // connections' observables and futures (observe.go), under mu
	producers atomic.Int64
	kicked    atomic.Int64
	// peakBuffered is the most one connection's buffer has held.
	peakBuffered atomic.Int64
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
		flows:  map[string]flowFunc{},
		conns:  map[*conn.Conn]struct{}{},
		pubs:   map[*conn.Conn]*pubTable{},
		ready:  make(chan struct{}),
	}
	ccfg, err := cfg.connConfig(s)
	if err != nil {
		return nil, err
	}
	ccfg.OnClose = s.forget
	s.ccfg = ccfg
	switch {
	case cfg.Auth != nil && len(cfg.ClusterKey) > 0:
		return nil, errors.New("server: a client RPC server (Auth) takes no cluster key: clients log in as users")
	case cfg.Auth == nil && len(cfg.ClusterKey) < 16:
		return nil, errors.New("server: a cluster key of at least 16 bytes is required")
	}
	s.pool = workers.New(workers.Config{Max: cfg.MaxWorkers, Queue: cfg.QueueSize})
	s.adm = newAdmission(cfg.admission())
	s.registerBuiltins()
	s.registerSubscribe()
	s.startDedup()
	return s, nil
}

// register adds a route; the method table is fixed once Serve starts.
func (s *Server) register(name string, id uint64, r *conn.Route) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("server: %q registered after Serve started", name)
	}
	if id == startFlowID && name != auth.StartFlowMethod {
		return fmt.Errorf("server: %q has the method ID of startFlow: rename it", name)
	}
	if other, dup := s.names[id]; dup {
		if other == name {
			return fmt.Errorf("server: %q registered twice", name)
		}
		return fmt.Errorf("server: %q and %q have the same method ID %#x: rename one", name, other, id)
	}
	s.routes[id], s.names[id] = s.guard(name, s.dedupRoute(id, r)), name
	s.ids = append(s.ids, id)
	return nil
}

// Route implements conn.Router.
func (s *Server) Route(method uint64) *conn.Route { return s.routes[method] }

// Methods implements conn.Router.
func (s *Server) Methods() []uint64 { return s.ids }

// Submit implements conn.Router on the bounded worker pool.
func (s *Server) Submit(t conn.Task) bool { return s.pool.Submit(t) }

// Go implements conn.Router: stream handlers and ordered-mode goroutines,
// which Close and Shutdown wait for.
func (s *Server) Go(f func()) {
	s.handlers.Add(1)
	go func() {
		defer s.handlers.Done()
		f()
	}()
}

// Serve listens on the configured address and serves until Shutdown or
// Close (it then returns ErrServerClosed) or a listener error. After
// Shutdown or Close it returns ErrServerClosed at once.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.started {
		s.mu.Unlock()
		return errors.New("server: Serve called twice")
	}
	s.started = true
	eng := s.cfg.Engine
	var err error
	if eng == nil {
		eng, err = conn.NewEngine(conn.EngineConfig{})
	}
	if err == nil {
		var ln net.Listener
		if ln, err = net.Listen("tcp", s.cfg.addr()); err != nil {
			if s.cfg.Engine == nil {
				_ = eng.Close()
			}
			err = fmt.Errorf("server: listen: %w", err)
		} else {
			s.eng, s.ln = eng, ln
			s.loopDone = make(chan struct{})
		}
	}
	s.listenErr = err
	s.mu.Unlock()
	s.markReady()
	if err != nil {
		return err
	}
	defer close(s.loopDone)
	if s.cfg.Auth != nil {
		s.log.Info("hawser: serving client RPC", "addr", s.ln.Addr().String(), "methods", len(s.ids), "tls", !s.ccfg.InsecurePlaintext)
	} else {
		s.log.Info("hawser: serving", "addr", s.ln.Addr().String(), "methods", len(s.ids))
	}

	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	for {
		nc, err := s.ln.Accept()
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
		p := s.adm.admit(nc)
		if p == nil {
			s.log.Warn("hawser: too many connections waiting to authenticate; refusing one", "remote", nc.RemoteAddr().String())
			continue
		}
		s.wg.Add(1) // the loop has not returned, so stopAccepting waits for this
		go s.accept(p, eng)
	}
}

// accept admits one connection (admit.go), runs its handshake and tracks
// it. The connection is registered here even when Shutdown has begun:
// Shutdown waits for this goroutine before it takes its list, so it sends
// the connection a GOAWAY like every other.
func (s *Server) accept(p *pending, eng *conn.Engine) {
	defer s.wg.Done()
	nc := p.nc
	remote := nc.RemoteAddr().String()
	fail := func(stage string, err error) {
		_ = nc.Close()
		s.log.Debug("hawser: connection refused before its handshake", "remote", remote, "stage", stage, "err", err)
		if s.ccfg.OnError != nil {
			s.ccfg.OnError(remote, err)
		}
	}
	if err := waitFirstByte(nc, s.cfg.firstByteTimeout()); err != nil {
		s.adm.finish(p, false)
		fail("first byte", err)
		return
	}
	if !s.adm.spoke(p) {
		fail("first byte", errEvicted)
		return
	}
	if err := s.adm.acquire(p); err != nil {
		s.adm.finish(p, false)
		fail("handshake slot", err)
		return
	}
	c, err := conn.Accept(context.Background(), eng, nc, s.ccfg)
	s.adm.finish(p, true)
	if err != nil {
		s.log.Debug("hawser: handshake failed", "remote", remote, "err", err)
		if s.ccfg.OnError != nil {
			s.ccfg.OnError(remote, err)
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
	s.conns[c] = struct{}{}
}

// forget drops a closed connection (conn.Config.OnClose, on the loop).
func (s *Server) forget(c *conn.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	t := s.forgetPubsLocked(c)
	s.mu.Unlock()
	if t != nil {
		t.close(errConnGone)
	}
}

func (s *Server) markReady() { s.readyOnce.Do(func() { close(s.ready) }) }

// Addr is the listening address once Serve has started (it waits for it).
// It is nil if Serve failed to listen or the server closed before Serve.
func (s *Server) Addr() net.Addr {
	<-s.ready
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
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

// Shutdown stops accepting (connections not yet authenticated are closed),
// sends GOAWAY on every connection, lets calls and streams in flight finish
// and their replies reach the socket, then closes, and waits for the
// handlers to return. If ctx ends first it closes what is left at once
// (handlers' contexts are cancelled) and returns ctx.Err() by ctx's
// deadline, without waiting for handlers that ignore cancellation; a later
// Close waits for them.
func (s *Server) Shutdown(ctx context.Context) error {
	conns, err := s.stopAccepting(ctx)
	if err == nil {
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
		for e := range errs {
			if e != nil && err == nil {
				err = e
			}
		}
	}
	if e := s.finish(ctx); err == nil {
		err = e
	}
	return err
}

// Close closes the listener and every connection at once: calls in flight
// fail on the callers' side with a transport error. It waits for handlers,
// whose contexts are cancelled, to return.
func (s *Server) Close() error {
	conns, _ := s.stopAccepting(context.Background())
	for _, c := range conns {
		_ = c.Close()
	}
	return s.finish(context.Background())
}

// stopAccepting closes the listener and every connection still in
// admission or its handshake, waits (up to ctx) for the accept loop and
// the handshake goroutines, and returns the open connections: every
// connection enrolled on the engine is among them.
func (s *Server) stopAccepting(ctx context.Context) ([]*conn.Conn, error) {
	s.mu.Lock()
	s.closing = true
	if s.ln != nil {
		_ = s.ln.Close()
	}
	loopDone := s.loopDone
	s.mu.Unlock()
	s.markReady()
	s.adm.closeAll()
	if loopDone != nil {
		select {
		case <-loopDone:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err := waitGroup(ctx, &s.wg); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn.Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out, nil
}

// finish stops the loops (closing any connection left), then waits, up to
// ctx, for the handler goroutines and the worker pool.
func (s *Server) finish(ctx context.Context) error {
	s.mu.Lock()
	eng := s.eng
	var left []*conn.Conn
	if s.cfg.Engine != nil {
		eng = nil // shared: close only this server's connections
		for c := range s.conns {
			left = append(left, c)
		}
	}
	s.mu.Unlock()
	if eng != nil {
		_ = eng.Close()
	}
	for _, c := range left {
		_ = c.Close()
		<-c.Done()
	}
	if err := waitGroup(ctx, &s.handlers); err != nil {
		return err
	}
	return s.pool.Shutdown(ctx)
}

// waitGroup waits for wg or ctx; the goroutine it starts ends with wg.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	if ctx.Done() == nil {
		wg.Wait()
		return nil
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
