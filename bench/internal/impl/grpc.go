package impl

import (
	"context"
	"net"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/mem"
)

// grpc-go over TLS 1.3 with a raw-bytes codec (no code generation, no
// protobuf): the fairest configuration of grpc for opaque payloads. Window
// sizes and everything else are grpc's defaults.

func init() {
	register(Impl{Name: "grpc", Streams: true, Serve: serveGRPC, Dial: dialGRPC})
}

// rawCodec marshals *[]byte into a buffer from grpc's pool (grpc may write
// it after SendMsg returns, so the caller's slice cannot be lent) and
// unmarshals by copying out of grpc's pooled buffers: what grpc's own proto
// codec does, minus protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.Copy(*(v.(*[]byte)), mem.DefaultBufferPool())}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "raw" }

var grpcDesc = grpc.ServiceDesc{
	ServiceName: "bench.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			return &in, nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			var req []byte
			if err := stream.RecvMsg(&req); err != nil {
				return err
			}
			item := make([]byte, decodeSize(req))
			for stream.Context().Err() == nil {
				streamItem(item)
				if err := stream.SendMsg(&item); err != nil {
					return err
				}
			}
			return nil
		},
	}},
}

type grpcServer struct {
	srv *grpc.Server
	ln  net.Listener
}

func serveGRPC(cfg ServerConfig) (Server, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS(cfg.Cert))), grpc.ForceServerCodecV2(rawCodec{}))
	srv.RegisterService(&grpcDesc, struct{}{})
	go func() { _ = srv.Serve(ln) }()
	return &grpcServer{srv: srv, ln: ln}, nil
}

func (s *grpcServer) Addr() string { return s.ln.Addr().String() }
func (s *grpcServer) Close() error { s.srv.Stop(); return nil }

type grpcClient struct {
	conns []*grpc.ClientConn
	next  atomic.Uint32
}

func dialGRPC(cfg ClientConfig) (Client, error) {
	c := &grpcClient{}
	for range max(cfg.Conns, 1) {
		cc, err := grpc.NewClient(cfg.Addr,
			grpc.WithTransportCredentials(credentials.NewTLS(clientTLS())),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		cc.Connect()
		c.conns = append(c.conns, cc)
	}
	return c, nil
}

func (c *grpcClient) pick() *grpc.ClientConn {
	return c.conns[int(c.next.Add(1))%len(c.conns)]
}

func (c *grpcClient) Unary(ctx context.Context, req []byte) ([]byte, error) {
	var resp []byte
	err := c.pick().Invoke(ctx, "/bench.Echo/Unary", &req, &resp)
	return resp, err
}

func (c *grpcClient) Stream(ctx context.Context, size int, onItem func([]byte)) error {
	st, err := c.pick().NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/bench.Echo/Stream")
	if err != nil {
		return err
	}
	req := encodeSize(size)
	if err := st.SendMsg(&req); err != nil {
		return err
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	for {
		var item []byte
		if err := st.RecvMsg(&item); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		onItem(item)
	}
}

func (c *grpcClient) Close() error {
	for _, cc := range c.conns {
		_ = cc.Close()
	}
	return nil
}
