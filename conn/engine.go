package conn

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"

	"github.com/panjf2000/gnet/v2"
)

// EngineConfig configures an Engine.
type EngineConfig struct {
	// Loops is the number of event loops. Default GOMAXPROCS.
	Loops int
	// ReadBufferCap is each loop's socket read buffer. Default 64 KiB.
	ReadBufferCap int
}

// Engine runs the gnet event loops that connections live on. A server and a
// pool each own one; connections of both kinds may share one. Dialed
// connections may run without a loop (Config.DialRead, pollSock); they
// are tracked here too. Close stops the loops and closes
// every connection of the Engine.
type Engine struct {
	cli *gnet.Client

	mu     sync.Mutex
	closed bool
	polls  map[*pollSock]struct{} // dialed connections not on a loop
}

// ErrEngineClosed is returned when enrolling a connection on a closed Engine.
var ErrEngineClosed = errors.New("conn: engine closed")

// NewEngine starts an Engine.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	loops := cfg.Loops
	if loops <= 0 {
		loops = runtime.GOMAXPROCS(0)
	}
	rb := cfg.ReadBufferCap
	if rb <= 0 {
		rb = 64 << 10
	}
	cli, err := gnet.NewClient(&handler{},
		gnet.WithNumEventLoop(loops),
		gnet.WithMulticore(loops > 1),
		gnet.WithReadBufferCap(rb),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(quietLogger{}),
	)
	if err != nil {
		return nil, fmt.Errorf("conn: starting event loops: %w", err)
	}
	if err := cli.Start(); err != nil {
		return nil, fmt.Errorf("conn: starting event loops: %w", err)
	}
	return &Engine{cli: cli}, nil
}

// Close stops the loops. Every connection on them closes, failing its
// pending calls with a transport error. It waits for the loops to exit.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	polls := make([]*pollSock, 0, len(e.polls))
	for p := range e.polls {
		polls = append(polls, p)
	}
	e.mu.Unlock()
	for _, p := range polls {
		_ = p.Close()
	}
	for _, p := range polls {
		<-p.done
	}
	return e.cli.Stop()
}

// register records a dialed connection that runs on a pollSock, so that
// Close closes it too.
func (e *Engine) register(p *pollSock) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrEngineClosed
	}
	if e.polls == nil {
		e.polls = make(map[*pollSock]struct{})
	}
	e.polls[p] = struct{}{}
	return nil
}

func (e *Engine) forget(p *pollSock) {
	e.mu.Lock()
	delete(e.polls, p)
	e.mu.Unlock()
}

// enroll hands an established TCP connection to a loop. It returns after the
// loop ran onOpen for c.
func (e *Engine) enroll(nc net.Conn, c *Conn) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrEngineClosed
	}
	_, err := e.cli.EnrollContext(nc, c)
	return err
}

// handler dispatches gnet's callbacks to the Conn in the gnet.Conn's context.
type handler struct{ gnet.BuiltinEventEngine }

func (*handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	c, ok := gc.Context().(*Conn)
	if !ok {
		return nil, gnet.Close
	}
	return nil, c.onOpen(gc)
}

func (*handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*Conn)
	if !ok {
		return gnet.Close
	}
	return c.onTraffic()
}

func (*handler) OnClose(gc gnet.Conn, err error) gnet.Action {
	if c, ok := gc.Context().(*Conn); ok {
		c.onClose(err)
	}
	return gnet.None
}

// quietLogger drops gnet's own logging; hawser reports through Config.Logger.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(string, ...any) {}
