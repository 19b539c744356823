package impl

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
)

// raw is the floor: length-prefixed echo over crypto/tls, one request in
// flight per connection, one connection per caller. A connection starts
// with one mode byte: 'U' (unary echo) or 'S' (a stream of items).

func init() {
	register(Impl{Name: "raw", Streams: true, Serve: serveRaw, Dial: dialRaw})
}

type rawServer struct{ ln net.Listener }

func serveRaw(cfg ServerConfig) (Server, error) {
	ln, err := tls.Listen("tcp", cfg.Addr, serverTLS(cfg.Cert))
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go rawServe(c)
		}
	}()
	return &rawServer{ln: ln}, nil
}

func rawServe(c net.Conn) {
	defer c.Close()
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	var hdr [4]byte
	switch mode[0] {
	case 'U':
		buf := make([]byte, 0, 64<<10)
		for {
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			n := int(binary.BigEndian.Uint32(hdr[:]))
			if n > 16<<20 {
				return
			}
			buf = append(buf[:0], hdr[:]...)
			buf = append(buf, make([]byte, n)...)
			if _, err := io.ReadFull(c, buf[4:]); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	case 'S':
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := min(int(binary.BigEndian.Uint32(hdr[:])), 16<<20)
		w := bufio.NewWriterSize(c, 64<<10)
		item := make([]byte, 4+n)
		binary.BigEndian.PutUint32(item, uint32(n))
		for {
			streamItem(item[4:])
			if _, err := w.Write(item); err != nil {
				return
			}
			if w.Buffered() == 0 || w.Available() < len(item) {
				if err := w.Flush(); err != nil {
					return
				}
			}
		}
	}
}

func (s *rawServer) Addr() string { return s.ln.Addr().String() }
func (s *rawServer) Close() error { return s.ln.Close() }

type rawClient struct {
	addr  string
	conns chan *tls.Conn
	all   []*tls.Conn
}

func dialRaw(cfg ClientConfig) (Client, error) {
	n := max(cfg.Conc, 1)
	c := &rawClient{addr: cfg.Addr, conns: make(chan *tls.Conn, n)}
	for range n {
		tc, err := tls.Dial("tcp", cfg.Addr, clientTLS())
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		if _, err := tc.Write([]byte{'U'}); err != nil {
			return nil, err
		}
		c.all = append(c.all, tc)
		c.conns <- tc
	}
	return c, nil
}

func (c *rawClient) Unary(ctx context.Context, req []byte) ([]byte, error) {
	var tc *tls.Conn
	select {
	case tc = <-c.conns:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { c.conns <- tc }()
	msg := make([]byte, 4, 4+len(req))
	binary.BigEndian.PutUint32(msg, uint32(len(req)))
	msg = append(msg, req...)
	if _, err := tc.Write(msg); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(tc, msg); err != nil {
		return nil, err
	}
	return msg[4:], nil
}

func (c *rawClient) Stream(ctx context.Context, size int, onItem func([]byte)) error {
	tc, err := tls.Dial("tcp", c.addr, clientTLS())
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = tc.Close() })
	defer stop()
	defer func() { _ = tc.Close() }()
	if _, err := tc.Write(append([]byte{'S'}, encodeSize(size)...)); err != nil {
		return err
	}
	r := bufio.NewReaderSize(tc, 64<<10)
	var hdr [4]byte
	item := make([]byte, size)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n := int(binary.BigEndian.Uint32(hdr[:])); n != size {
			return fmt.Errorf("raw: item of %d bytes, want %d", n, size)
		}
		if _, err := io.ReadFull(r, item); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		onItem(item)
	}
}

func (c *rawClient) Close() error {
	for _, tc := range c.all {
		_ = tc.Close()
	}
	return nil
}
