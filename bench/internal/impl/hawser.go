package impl

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/server"
)

var (
	hEcho   = hawser.NewMethod[[]byte, []byte]("bench.Echo")
	hStream = hawser.NewStream[[]byte, []byte]("bench.Stream")
)

func init() {
	register(Impl{Name: "hawser", Streams: true, Serve: serveHawser(false), Dial: dialHawser})
	register(Impl{Name: "hawser-inline", Streams: true, Serve: serveHawser(true), Dial: dialHawser})
}

type hawserServer struct {
	srv  *server.Server
	done chan error
}

func serveHawser(inline bool) func(ServerConfig) (Server, error) {
	return func(cfg ServerConfig) (Server, error) {
		host, port, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return nil, err
		}
		p, _ := strconv.Atoi(port)
		if p == 0 {
			p = -1
		}
		srv, err := server.New(server.Config{
			BindAddr: host, Port: p, Certificate: &cfg.Cert, ClusterKey: cfg.ClusterKey,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			return nil, err
		}
		var opts []server.Option
		if inline {
			opts = append(opts, server.Inline())
		}
		if err := server.Handle(srv, hEcho, func(_ context.Context, b []byte) ([]byte, error) { return b, nil }, opts...); err != nil {
			return nil, err
		}
		if err := server.HandleStream(srv, hStream, func(ctx context.Context, req []byte, out hawser.Sender[[]byte]) error {
			item := make([]byte, decodeSize(req))
			for ctx.Err() == nil {
				streamItem(item)
				if err := out.Send(item); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return nil, err
		}
		s := &hawserServer{srv: srv, done: make(chan error, 1)}
		go func() { s.done <- srv.Serve(context.Background()) }()
		select {
		case <-srv.Ready():
		case err := <-s.done:
			return nil, err
		}
		return s, nil
	}
}

func (s *hawserServer) Addr() string { return s.srv.Addr().String() }
func (s *hawserServer) Close() error {
	_ = s.srv.Close()
	if err := <-s.done; !errors.Is(err, server.ErrServerClosed) {
		return err
	}
	return nil
}

type hawserClient struct {
	eng   *conn.Engine
	conns []*conn.Conn
	next  atomic.Uint32
}

func dialHawser(cfg ClientConfig) (Client, error) {
	eng, err := conn.NewEngine(conn.EngineConfig{})
	if err != nil {
		return nil, err
	}
	c := &hawserClient{eng: eng}
	for range max(cfg.Conns, 1) {
		cc, err := conn.Dial(context.Background(), eng, cfg.Addr, &conn.Config{
			TLS: conn.ClientTLS("", nil), ClusterKey: cfg.ClusterKey, InactivityTimeout: -1,
		})
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		c.conns = append(c.conns, cc)
	}
	return c, nil
}

func (c *hawserClient) pick() *conn.Conn {
	return c.conns[int(c.next.Add(1))%len(c.conns)]
}

func (c *hawserClient) Unary(ctx context.Context, req []byte) ([]byte, error) {
	return c.pick().Call(ctx, hEcho.ID(), req)
}

func (c *hawserClient) Stream(ctx context.Context, size int, onItem func([]byte)) error {
	s, err := c.pick().OpenStream(ctx, hStream.ID(), encodeSize(size))
	if err != nil {
		return err
	}
	defer func() { _ = s.Close() }()
	for {
		item, err := s.Recv()
		if err != nil {
			if ctx.Err() != nil || pastDeadline(ctx) {
				// The run is over. The handler sees the deadline too and
				// ends the stream, and that end can arrive before ctx's
				// own timer has fired (ctx.Err is still nil then).
				return nil
			}
			return err
		}
		onItem(item)
	}
}

func (c *hawserClient) Close() error {
	var wg sync.WaitGroup
	for _, cc := range c.conns {
		wg.Add(1)
		go func() { defer wg.Done(); _ = cc.Close() }()
	}
	wg.Wait()
	return c.eng.Close()
}

// pastDeadline reports whether ctx's deadline has passed, whether or not
// its timer has fired yet.
func pastDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}
