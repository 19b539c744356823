package impl

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"

	"github.com/lesismal/arpc"
	arpclog "github.com/lesismal/arpc/log"
)

// lesismal/arpc over TLS: the fastest std-net RPC we know of. Its logging
// goes to stdout by default, which would corrupt the runner's protocol:
// it is turned off.

func init() {
	arpclog.SetLevel(arpclog.LevelNone)
	register(Impl{Name: "arpc", Serve: serveARPC, Dial: dialARPC})
}

type arpcServer struct {
	srv *arpc.Server
	ln  net.Listener
}

func serveARPC(cfg ServerConfig) (Server, error) {
	ln, err := tls.Listen("tcp", cfg.Addr, serverTLS(cfg.Cert))
	if err != nil {
		return nil, err
	}
	srv := arpc.NewServer()
	srv.Handler.Handle("/echo", func(ctx *arpc.Context) { _ = ctx.Write(ctx.Body()) })
	go func() { _ = srv.Serve(ln) }()
	return &arpcServer{srv: srv, ln: ln}, nil
}

func (s *arpcServer) Addr() string { return s.ln.Addr().String() }

// Close closes the listener; arpc's Server.Stop races its own accept loop
// (seen with -race), and the process exits right after anyway.
func (s *arpcServer) Close() error { return s.ln.Close() }

type arpcClient struct {
	conns []*arpc.Client
	next  atomic.Uint32
}

func dialARPC(cfg ClientConfig) (Client, error) {
	c := &arpcClient{}
	for range max(cfg.Conns, 1) {
		cc, err := arpc.NewClient(func() (net.Conn, error) { return tls.Dial("tcp", cfg.Addr, clientTLS()) })
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		c.conns = append(c.conns, cc)
	}
	return c, nil
}

func (c *arpcClient) Unary(ctx context.Context, req []byte) ([]byte, error) {
	var resp []byte
	err := c.conns[int(c.next.Add(1))%len(c.conns)].CallWith(ctx, "/echo", req, &resp)
	return resp, err
}

func (c *arpcClient) Stream(context.Context, int, func([]byte)) error { return ErrNoStreams }

func (c *arpcClient) Close() error {
	for _, cc := range c.conns {
		cc.Stop()
	}
	return nil
}
