package conn

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
)

// rawPeer is a dialer that completes TLS and the hawser handshake, then
// writes whatever a test wants, inside TLS.
type rawPeer struct {
	nc net.Conn
	h  *handshake
}

func dialRaw(t *testing.T, addr string) *rawPeer {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := clientConfig()
	cc.Compression = true
	cfg, err := cc.resolved(true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	h, _, err := dialHandshake(ctx, cfg, nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &rawPeer{nc: nc, h: h}
}

func (p *rawPeer) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := p.h.rw.Write(b); err != nil {
		t.Fatal(err)
	}
}

// readFrames reads frames until the server closes the connection (or 2s).
func (p *rawPeer) readFrames() ([]codec.Frame, error) {
	_ = p.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	var buf []byte
	tmp := make([]byte, 4096)
	var out []codec.Frame
	for {
		n, err := p.h.rw.Read(tmp)
		buf = append(buf, tmp[:n]...)
		for {
			f, k, perr := codec.Parse(buf, codec.HardMaxFrameSize)
			if perr != nil {
				break
			}
			f.Body = append([]byte(nil), f.Body...)
			out = append(out, f)
			buf = buf[k:]
		}
		if err != nil {
			return out, err
		}
	}
}

func goAwayCode(frames []codec.Frame) (codec.Code, bool) {
	for _, f := range frames {
		if f.Kind == codec.KindGoAway {
			return f.Code, true
		}
	}
	return 0, false
}

// Hostile bytes after a valid handshake: each case gets a typed error and
// the connection closes with a GOAWAY saying why (or, for an unknown
// method, an ERROR for that call only); no panic; a well-behaved connection
// next to them keeps working.
func TestHostileFrames(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModePool))
	srv := startServer(t, r, func(c *Config) { c.Compression = true })
	good := dialTest(t, newClientEngine(t), srv.addr(), nil)
	check := func() {
		t.Helper()
		if resp, err := good.Call(context.Background(), echo, []byte("ok")); err != nil || string(resp) != "ok" {
			t.Fatalf("well-behaved connection broken: %q %v", resp, err)
		}
	}
	hdr := func(h codec.Header) []byte { return codec.AppendHeader(nil, h) }
	garbage := make([]byte, 4096)
	_, _ = rand.Read(garbage)
	garbage[4] = 0xee // an unknown kind, so the test is deterministic

	cases := []struct {
		name     string
		bytes    []byte
		wantErr  error
		wantCode codec.Code
	}{
		{"random garbage", garbage, codec.ErrUnknownKind, codec.CodeProtocol},
		{"oversize length", hdr(codec.Header{Kind: codec.KindCall, ID: 1, Length: 1 << 30}), codec.ErrFrameTooLarge, codec.CodeFrameTooLarge},
		{"unknown kind", hdr(codec.Header{Kind: 200, ID: 1}), codec.ErrUnknownKind, codec.CodeProtocol},
		{"bad flags", hdr(codec.Header{Kind: codec.KindPing, Flags: codec.FlagMore}), codec.ErrBadFlags, codec.CodeProtocol},
		{"hello again", codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindHello}}), codec.ErrBadFrame, codec.CodeProtocol},
		{"reply from dialer", codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindReply, ID: 1}}), codec.ErrBadFrame, codec.CodeProtocol},
		{"even call id", codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindCall, ID: 2}, Body: codec.AppendCallPrefix(nil, echo, nil)}), codec.ErrBadFrame, codec.CodeProtocol},
		{"orphan continuation", codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindContinuation, ID: 1}, Body: []byte("x")}), codec.ErrBadFrame, codec.CodeProtocol},
		{"bad metadata", codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindCall, Flags: codec.FlagMetadata, ID: 1}, Body: append(codec.AppendCallPrefix(nil, echo, nil), 0, 9, 0)}), codec.ErrBadMetadata, codec.CodeProtocol},
		{"compression bomb", bombFrame(t, echo), codec.ErrDecompressTooBig, codec.CodeMessageTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			p := dialRaw(t, srv.addr())
			p.write(t, c.bytes)
			frames, err := p.readFrames()
			if isTimeout(err) {
				t.Fatal("server did not close the connection")
			}
			code, ok := goAwayCode(frames)
			if !ok || code != c.wantCode {
				t.Fatalf("got frames %v, want a GOAWAY with %v", frames, c.wantCode)
			}
			if srv.waitErr(c.wantErr, time.Second) == nil {
				t.Fatalf("server recorded %v, want %v", srv.errors(), c.wantErr)
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
				t.Fatalf("handling it allocated %d bytes", grew)
			}
			check()
		})
	}

	t.Run("compressed without negotiation", func(t *testing.T) {
		plain := startServer(t, r, nil)
		p := dialRaw(t, plain.addr())
		p.write(t, bombFrame(t, echo))
		frames, err := p.readFrames()
		if isTimeout(err) {
			t.Fatal("not closed")
		}
		if code, ok := goAwayCode(frames); !ok || code != codec.CodeProtocol {
			t.Fatalf("frames %v", frames)
		}
		if plain.waitErr(codec.ErrBadFlags, time.Second) == nil {
			t.Fatalf("server recorded %v", plain.errors())
		}
	})

	t.Run("truncated frame", func(t *testing.T) {
		p := dialRaw(t, srv.addr())
		f := codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindCall, ID: 1}, Body: append(codec.AppendCallPrefix(nil, echo, nil), make([]byte, 100)...)})
		p.write(t, f[:50])
		_ = p.h.tc.CloseWrite()
		if _, err := p.readFrames(); isTimeout(err) {
			t.Fatal("server kept a connection that ended mid-frame")
		}
		if srv.waitErr(ErrTruncated, time.Second) == nil {
			t.Fatalf("server recorded %v, want ErrTruncated", srv.errors())
		}
		check()
	})

	t.Run("call for an unknown method", func(t *testing.T) {
		p := dialRaw(t, srv.addr())
		call := codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindCall, ID: 1}, Body: codec.AppendCallPrefix(nil, codec.MethodID("nope"), nil)})
		ping := codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindPing, Arg: 9}})
		p.write(t, append(call, ping...))
		_ = p.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		var got []codec.Frame
		buf := make([]byte, 0, 1024)
		tmp := make([]byte, 1024)
		for len(got) < 2 { // the PONG is urgent and may come first
			n, err := p.h.rw.Read(tmp)
			if err != nil {
				t.Fatalf("connection closed: %v (frames %v)", err, got)
			}
			buf = append(buf, tmp[:n]...)
			for {
				f, k, err := codec.Parse(buf, codec.DefaultMaxFrameSize)
				if err != nil {
					break
				}
				got = append(got, f)
				buf = buf[k:]
			}
		}
		if got[0].Kind == codec.KindPong {
			got[0], got[1] = got[1], got[0]
		}
		if got[0].Kind != codec.KindError || got[0].Code != codec.CodeUnimplemented || got[0].ID != 1 {
			t.Fatalf("got %+v, want ERROR(unimplemented) for call 1", got[0].Header)
		}
		if got[1].Kind != codec.KindPong || got[1].Arg != 9 {
			t.Fatalf("connection did not stay up: %+v", got[1].Header)
		}
		check()
	})

	t.Run("frame before the handshake", func(t *testing.T) {
		nc, err := net.Dial("tcp", srv.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		cfg, _ := clientConfig().resolved(true)
		h := newHandshake(cfg, nc)
		h.tc = tls.Client(h.tr, cfg.TLS)
		h.rw = h.tc
		if err := h.tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		h.self, _ = newPreface(cfg.versions)
		call := codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindCall, ID: 1}, Body: codec.AppendCallPrefix(nil, echo, nil)})
		_, _ = h.rw.Write(append(codec.AppendPreface(nil, h.self), call...))
		p := &rawPeer{nc: nc, h: h}
		frames, err := p.readFrames()
		if isTimeout(err) {
			t.Fatal("not closed")
		}
		// The server's preface comes first; then the GOAWAY.
		if _, ok := goAwayCode(frames); !ok && !errors.Is(err, io.EOF) {
			t.Fatalf("frames %v err %v", frames, err)
		}
		if srv.waitErr(ErrHandshake, time.Second) == nil {
			t.Fatalf("server recorded %v", srv.errors())
		}
		check()
	})

	t.Run("garbage instead of TLS", func(t *testing.T) {
		nc, err := net.Dial("tcp", srv.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_, _ = nc.Write(garbage)
		_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadAll(nc); isTimeout(err) {
			t.Fatal("not closed")
		}
		check()
	})
}

// bombFrame is a CALL whose s2 payload claims far more than a frame.
func bombFrame(t *testing.T, method uint64) []byte {
	big := make([]byte, 8<<20)
	bomb, ok := codec.Compress(make([]byte, 0, codec.MaxCompressedLen(len(big))), big)
	if !ok {
		t.Fatal("no bomb")
	}
	body := append(codec.AppendCallPrefix(nil, method, nil), bomb...)
	return codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindCall, Flags: codec.FlagCompressed, ID: 1}, Body: body})
}

// DialRaw gives an authenticated byte stream a hostile peer can write
// frames to.
func TestDialRaw(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModeInline))
	srv := startServer(t, r, nil)
	nc, err := net.Dial("tcp", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rw, err := DialRaw(context.Background(), nc, clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	call := codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindCall, ID: 1}, Body: append(codec.AppendCallPrefix(nil, echo, nil), "raw"...)})
	if _, err := rw.Write(call); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(rw, buf, codec.HeaderSize+3)
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := codec.Parse(buf[:n], codec.DefaultMaxFrameSize)
	if err != nil || f.Kind != codec.KindReply || string(f.Body) != "raw" {
		t.Fatalf("%+v %v", f.Header, err)
	}
}

// A single-frame message on an ID whose fragmented message is still being
// reassembled is a protocol violation (it would get two replies).
func TestFirstFrameDuringReassembly(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModePool))
	srv := startServer(t, r, nil)
	p := dialRaw(t, srv.addr())
	first := codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindCall, Flags: codec.FlagMore, ID: 1}, Body: append(codec.AppendCallPrefix(nil, echo, nil), "ab"...)})
	again := codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindCall, ID: 1}, Body: append(codec.AppendCallPrefix(nil, echo, nil), "cd"...)})
	p.write(t, append(first, again...))
	frames, err := p.readFrames()
	if isTimeout(err) {
		t.Fatal("not closed")
	}
	for _, f := range frames {
		if f.Kind == codec.KindReply {
			t.Fatalf("got a REPLY for the interleaved message: %v", frames)
		}
	}
	if code, ok := goAwayCode(frames); !ok || code != codec.CodeProtocol {
		t.Fatalf("frames %v", frames)
	}
}

// A malformed ERROR from a hostile acceptor fails the pending call with a
// transport error; it never leaves the caller waiting.
func TestMalformedErrorFailsCall(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := newTestRouter()
	m := r.handle("m", echoRoute(ModeInline))
	acfg, err := serverConfig(t, r).resolved(false)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		h, _, err := acceptHandshake(context.Background(), acfg, nc)
		if err != nil {
			return
		}
		var hb [codec.HeaderSize + 64]byte
		if _, err := io.ReadAtLeast(h.rw, hb[:], codec.HeaderSize+codec.CallPrefixSize); err != nil {
			return
		}
		// An ERROR whose name length runs past the body.
		bad := codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindError, Code: codec.CodeInternal, ID: 1}, Body: []byte{200, 'x'}})
		_, _ = h.rw.Write(bad)
		time.Sleep(200 * time.Millisecond)
	}()
	c := dialTest(t, newClientEngine(t), ln.Addr().String(), nil)
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), m, []byte("x"))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, hawser.ErrTransport) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the call hangs after a malformed ERROR")
	}
}
