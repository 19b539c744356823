package impl

import (
	"context"
	"crypto/tls"
	"net"
	"net/rpc"
	"sync/atomic"
)

// Go's net/rpc (gob) over TLS, unary only.

func init() {
	register(Impl{Name: "netrpc", Serve: serveNetRPC, Dial: dialNetRPC})
}

// Bench is the net/rpc service.
type Bench struct{}

// Echo returns its argument.
func (Bench) Echo(req []byte, resp *[]byte) error {
	*resp = req
	return nil
}

type netrpcServer struct{ ln net.Listener }

func serveNetRPC(cfg ServerConfig) (Server, error) {
	ln, err := tls.Listen("tcp", cfg.Addr, serverTLS(cfg.Cert))
	if err != nil {
		return nil, err
	}
	srv := rpc.NewServer()
	if err := srv.RegisterName("Bench", Bench{}); err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(c)
		}
	}()
	return &netrpcServer{ln: ln}, nil
}

func (s *netrpcServer) Addr() string { return s.ln.Addr().String() }
func (s *netrpcServer) Close() error { return s.ln.Close() }

type netrpcClient struct {
	conns []*rpc.Client
	next  atomic.Uint32
}

func dialNetRPC(cfg ClientConfig) (Client, error) {
	c := &netrpcClient{}
	for range max(cfg.Conns, 1) {
		tc, err := tls.Dial("tcp", cfg.Addr, clientTLS())
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		c.conns = append(c.conns, rpc.NewClient(tc))
	}
	return c, nil
}

func (c *netrpcClient) Unary(ctx context.Context, req []byte) ([]byte, error) {
	var resp []byte
	call := c.conns[int(c.next.Add(1))%len(c.conns)].Go("Bench.Echo", req, &resp, make(chan *rpc.Call, 1))
	select {
	case <-call.Done:
		return resp, call.Error
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *netrpcClient) Stream(context.Context, int, func([]byte)) error { return ErrNoStreams }

func (c *netrpcClient) Close() error {
	for _, cc := range c.conns {
		_ = cc.Close()
	}
	return nil
}
