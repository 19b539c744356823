package fuzz

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/internal/certgen"
	"github.com/hawser-rpc/hawser/internal/workers"
)

var clusterKey = []byte("hawser fuzz cluster key, not a secret")

// The acceptor's limits. They are the smallest the protocol allows for
// frames (codec.MinMaxFrameSize) and small for messages, calls and streams,
// so that inputs of a few KiB reach every limit.
const (
	maxFrame   = codec.MinMaxFrameSize // 16 KiB
	maxMessage = 64 << 10
	maxCalls   = 16
	maxStreams = 4
	// hostileWindow is the stream window the hostile dialer announces: the
	// smallest allowed, so that a stream of a few items waits for CREDIT.
	hostileWindow = codec.MinStreamWindow
)

// ioTimeout bounds every wait of a harness for the library; reaching it is a
// failure (a hang), not a normal outcome.
const ioTimeout = 3 * time.Second

var discard = slog.New(slog.DiscardHandler)

var (
	certOnce sync.Once
	certPair *certgen.Pair
	certErr  error
)

func testCert(t testing.TB) tls.Certificate {
	certOnce.Do(func() { certPair, certErr = certgen.SelfSigned("localhost", "127.0.0.1") })
	if certErr != nil {
		t.Fatal(certErr)
	}
	return certPair.Cert
}

// The methods every acceptor of this package serves. mUnknown is not served.
var (
	mEcho    = codec.MethodID("fuzz.Echo")        // worker pool
	mInline  = codec.MethodID("fuzz.EchoInline")  // on the event loop
	mOrdered = codec.MethodID("fuzz.EchoOrdered") // ordered goroutine
	mWatch   = codec.MethodID("fuzz.Watch")       // stream, shaped by its request
	mHold    = codec.MethodID("fuzz.WatchHold")   // fuzz.Watch's items, then waits for its context
	mBlock   = codec.MethodID("fuzz.Block")       // waits for its context
	mPanic   = codec.MethodID("fuzz.Panic")       // panics
	mUnknown = codec.MethodID("fuzz.NotServed")
)

// watchItems is what fuzz.Watch sends slices of.
var watchItems = func() []byte {
	b := make([]byte, 4<<10)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}()

// errWatch ends a stream whose request asks for an error.
var errWatch = errors.New("fuzz: watch asked to fail")

// watchShape reads fuzz.Watch's request: item count (0..7), item size
// (0..2040 bytes) and whether to end with an error.
func watchShape(req []byte) (n, size int, fail bool) {
	if len(req) > 0 {
		n, fail = int(req[0]&7), req[0]&0x80 != 0
	}
	if len(req) > 1 {
		size = int(req[1]) * 8
	}
	return n, size, fail
}

// watchItem is item i of a fuzz.Watch stream of items of size bytes.
func watchItem(i, size int) []byte { return watchItems[i*64 : i*64+size] }

// sendWatch sends the items req asks for (watchShape) and returns errWatch
// if it asks for an error.
func sendWatch(req *conn.Request, s *conn.ServerStream) error {
	n, size, fail := watchShape(req.Payload)
	for i := range n {
		if err := s.Send(watchItem(i, size)); err != nil {
			return err
		}
	}
	if fail {
		return errWatch
	}
	return nil
}

// router is a conn.Router over a fixed table and a bounded worker pool.
type router struct {
	routes map[uint64]*conn.Route
	ids    []uint64
	pool   *workers.Pool
}

func newRouter() *router {
	r := &router{routes: map[uint64]*conn.Route{}, pool: workers.New(workers.Config{Max: 64, Queue: 256})}
	echo := func(_ context.Context, req *conn.Request) ([]byte, error) { return req.Payload, nil }
	r.add(mEcho, &conn.Route{Mode: conn.ModePool, Unary: echo})
	r.add(mInline, &conn.Route{Mode: conn.ModeInline, Unary: echo})
	r.add(mOrdered, &conn.Route{Mode: conn.ModeOrdered, Unary: echo})
	r.add(mBlock, &conn.Route{Unary: func(ctx context.Context, _ *conn.Request) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	r.add(mPanic, &conn.Route{Unary: func(context.Context, *conn.Request) ([]byte, error) {
		panic("fuzz: handler panics on purpose")
	}})
	r.add(mWatch, &conn.Route{Stream: func(_ context.Context, req *conn.Request, s *conn.ServerStream) error {
		return sendWatch(req, s)
	}})
	// fuzz.WatchHold stays in flight after its items until the dialer
	// cancels it or the connection closes, so that a frame sent after its
	// CALL finds it in flight whatever the timing (PROTOCOL.md §3.3: the
	// acceptor ignores CANCEL and CREDIT for an ID with nothing in flight).
	r.add(mHold, &conn.Route{Stream: func(ctx context.Context, req *conn.Request, s *conn.ServerStream) error {
		if err := sendWatch(req, s); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	}})
	return r
}

func (r *router) add(id uint64, rt *conn.Route) {
	r.routes[id] = rt
	r.ids = append(r.ids, id)
}

func (r *router) Route(m uint64) *conn.Route { return r.routes[m] }
func (r *router) Methods() []uint64          { return r.ids }
func (r *router) Submit(t conn.Task) bool    { return r.pool.Submit(t) }
func (r *router) Go(f func())                { go f() }

// accepted is the outcome of conn.Accept for one dialer.
type accepted struct {
	c   *conn.Conn
	err error
}

// acceptor is a hawser acceptor on loopback TLS built from conn.Accept, so
// that a test can find the server side of each connection it opens (keyed
// by the dialer's address) and wait for it to close, and can read the
// errors conn.Config.OnError reported for it.
type acceptor struct {
	ln     net.Listener
	eng    *conn.Engine
	router *router
	cfg    *conn.Config
	wg     sync.WaitGroup

	mu      sync.Mutex
	results map[string]chan accepted
	errs    map[string][]error
	open    map[*conn.Conn]struct{} // accepted and not yet released by a test
}

func startAcceptor(t testing.TB) *acceptor {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := conn.NewEngine(conn.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	a := &acceptor{
		ln:      ln,
		eng:     eng,
		router:  newRouter(),
		results: map[string]chan accepted{},
		errs:    map[string][]error{},
		open:    map[*conn.Conn]struct{}{},
	}
	a.cfg = &conn.Config{
		TLS:               conn.ServerTLS(testCert(t)),
		ClusterKey:        clusterKey,
		NodeID:            "fuzz-acceptor",
		Timeout:           ioTimeout,
		InactivityTimeout: -1, // no timers: every close is caused by an input
		KeepaliveInterval: -1,
		MaxFrameSize:      maxFrame,
		MaxMessageSize:    maxMessage,
		MaxCalls:          maxCalls,
		MaxStreams:        maxStreams,
		Compression:       true,
		Logger:            discard,
		Router:            a.router,
		OnError: func(remote string, err error) {
			a.mu.Lock()
			a.errs[remote] = append(a.errs[remote], err)
			a.mu.Unlock()
		},
	}
	a.wg.Add(1)
	go a.acceptLoop()
	return a
}

func (a *acceptor) addr() string { return a.ln.Addr().String() }

func (a *acceptor) acceptLoop() {
	defer a.wg.Done()
	for {
		nc, err := a.ln.Accept()
		if err != nil {
			return
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			remote := nc.RemoteAddr().String()
			c, err := conn.Accept(context.Background(), a.eng, nc, a.cfg)
			a.mu.Lock()
			if c != nil {
				a.open[c] = struct{}{}
			}
			ch := a.resultLocked(remote)
			a.mu.Unlock()
			ch <- accepted{c, err}
		}()
	}
}

func (a *acceptor) resultLocked(remote string) chan accepted {
	ch := a.results[remote]
	if ch == nil {
		ch = make(chan accepted, 1)
		a.results[remote] = ch
	}
	return ch
}

// serverSide returns the server side of the connection dialed from local.
func (a *acceptor) serverSide(t testing.TB, local string) *conn.Conn {
	t.Helper()
	a.mu.Lock()
	ch := a.resultLocked(local)
	a.mu.Unlock()
	select {
	case r := <-ch:
		a.mu.Lock()
		delete(a.results, local)
		a.mu.Unlock()
		if r.err != nil {
			t.Fatalf("acceptor refused a valid handshake: %v", r.err)
		}
		return r.c
	case <-time.After(ioTimeout):
		t.Fatal("acceptor did not finish the handshake")
		return nil
	}
}

// release waits until c has closed and its stream and ordered handlers have
// returned, and returns the errors OnError reported for it.
func (a *acceptor) release(t testing.TB, c *conn.Conn) []error {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(ioTimeout):
		t.Fatalf("server side of %s did not close", c.RemoteAddr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("handlers of %s did not return: %v", c.RemoteAddr(), err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.open, c)
	errs := a.errs[c.RemoteAddr()]
	delete(a.errs, c.RemoteAddr())
	return errs
}

func (a *acceptor) close() {
	_ = a.ln.Close()
	a.wg.Wait()
	_ = a.eng.Close()
	a.mu.Lock()
	open := make([]*conn.Conn, 0, len(a.open))
	for c := range a.open {
		open = append(open, c)
	}
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	for _, c := range open {
		_ = c.Wait(ctx)
	}
	a.router.pool.Close()
}

// world is the shared setting of FuzzServerConn and FuzzSplitFeed: one
// acceptor and one long-lived well-behaved client connection to it.
type world struct {
	acc     *acceptor
	cliEng  *conn.Engine
	good    *conn.Conn
	checks  int
	payload []byte
}

var (
	worldOnce sync.Once
	theWorld  *world
	worldErr  error
)

// getWorld starts the shared acceptor and client once per process.
func getWorld(t testing.TB) *world {
	worldOnce.Do(func() {
		w := &world{acc: startAcceptor(t)}
		atExit(w.acc.close)
		w.cliEng, worldErr = conn.NewEngine(conn.EngineConfig{Loops: 1})
		if worldErr != nil {
			return
		}
		atExit(func() { _ = w.cliEng.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		w.good, worldErr = conn.Dial(ctx, w.cliEng, w.acc.addr(), &conn.Config{
			TLS:               conn.ClientTLS("", nil),
			ClusterKey:        clusterKey,
			NodeID:            "fuzz-good-client",
			KeepaliveInterval: -1,
			InactivityTimeout: -1,
			Compression:       true,
			Logger:            discard,
		})
		if worldErr != nil {
			return
		}
		atExit(func() { _ = w.good.Close() })
		w.payload = bytes.Repeat([]byte("well-behaved "), 200) // compressed on the wire
		theWorld = w
	})
	if worldErr != nil {
		t.Fatalf("starting the harness: %v", worldErr)
	}
	return theWorld
}

// checkGood fails t unless the well-behaved connection still gets correct
// echo replies, on the pool and on the loop.
func (w *world) checkGood(t testing.TB) {
	t.Helper()
	w.checks++
	p := fmt.Appendf(w.payload[:len(w.payload):len(w.payload)], "#%d", w.checks)
	for _, m := range []uint64{mEcho, mInline} {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		got, err := w.good.Call(ctx, m, p)
		cancel()
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("well-behaved connection broken: %d bytes back, want %d: %v", len(got), len(p), err)
		}
	}
}

// hostileConfig is how a hostile dialer announces itself: compression on,
// the acceptor's limits, the smallest stream window.
func hostileConfig() *conn.Config {
	return &conn.Config{
		TLS:            conn.ClientTLS("", nil),
		ClusterKey:     clusterKey,
		NodeID:         "fuzz-hostile",
		Timeout:        ioTimeout,
		MaxFrameSize:   maxFrame,
		MaxMessageSize: maxMessage,
		StreamWindow:   hostileWindow,
		Compression:    true,
	}
}

// peer is a dialer that completed TLS and the handshake with conn.DialRaw and
// then writes whatever it wants inside TLS.
type peer struct {
	nc    net.Conn
	rw    io.ReadWriter
	local string
}

func dialPeer(t testing.TB, addr string, cfg *conn.Config) *peer {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	rw, err := conn.DialRaw(ctx, nc, cfg)
	if err != nil {
		_ = nc.Close()
		t.Fatalf("DialRaw: %v", err)
	}
	return &peer{nc: nc, rw: rw, local: nc.LocalAddr().String()}
}

// write sends b in one Write (crypto/tls cuts it into records of 16 KiB).
// Errors are ignored: the server may have closed on an earlier violation.
func (p *peer) write(b []byte) {
	_ = p.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, _ = p.rw.Write(b)
}

// closeWrite sends TLS close_notify: the server reads EOF.
func (p *peer) closeWrite() {
	if cw, ok := p.rw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// frameReader reads and parses the server's frames on its own goroutine
// until the connection ends or ioTimeout passes.
type frameReader struct {
	done      chan struct{}
	sentinels [2]chan struct{} // closed at the first PONG with sentinelArg+i
	onFrame   func(codec.Frame) bool

	// Valid after done.
	err      error // why reading stopped
	parseErr error // the server sent bytes that are not a frame within our limits
	timedOut bool
}

// sentinelArg marks the PINGs a harness sends after an input: a PONG
// proves the server parsed everything before its PING.
const sentinelArg = 0x5e471e1

// readFrames starts reading from p. onFrame sees every frame (its Body
// aliases a buffer reused afterwards) and returns true once it needs no more.
func readFrames(p *peer, onFrame func(codec.Frame) bool) *frameReader {
	r := &frameReader{done: make(chan struct{}), onFrame: onFrame}
	for i := range r.sentinels {
		r.sentinels[i] = make(chan struct{})
	}
	_ = p.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	go r.run(p.rw)
	return r
}

func (r *frameReader) run(rw io.Reader) {
	defer close(r.done)
	buf := make([]byte, 0, 64<<10)
	var seen [2]bool
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rw.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		off := 0
		for {
			f, k, perr := codec.Parse(buf[off:], maxFrame)
			if errors.Is(perr, codec.ErrNeedMore) {
				break
			}
			if perr != nil {
				r.parseErr = perr
				return
			}
			off += k
			if i := int(f.Arg) - sentinelArg; f.Kind == codec.KindPong && (i == 0 || i == 1) && !seen[i] {
				seen[i] = true
				close(r.sentinels[i])
			}
			if r.onFrame != nil && r.onFrame(f) {
				return
			}
		}
		buf = buf[:copy(buf, buf[off:])]
		if err != nil {
			r.err = err
			var ne net.Error
			r.timedOut = errors.As(err, &ne) && ne.Timeout()
			return
		}
	}
}

// pong sends PING sentinelArg+i and waits for its PONG. It reports false if
// the connection ended first.
func (r *frameReader) pong(t testing.TB, p *peer, i int) bool {
	t.Helper()
	p.write(pingFrame(uint32(sentinelArg + i)))
	select {
	case <-r.sentinels[i]:
		return true
	case <-r.done:
		return false
	case <-time.After(ioTimeout):
		t.Fatal("the server neither answered a PING nor closed")
		return false
	}
}

// wait waits until reading stopped.
func (r *frameReader) wait(t testing.TB) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(2 * ioTimeout):
		t.Fatal("frame reader stuck")
	}
}

func pingFrame(arg uint32) []byte {
	return codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindPing, Arg: arg}})
}
