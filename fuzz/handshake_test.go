package fuzz

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/server"
)

// handshakeTimeout is the Timeout (rpc-timeout) of the acceptor of
// FuzzHandshakeAcceptor and of the dialer of FuzzHandshakeDialer: a peer
// that stops sending must be dropped within it.
const handshakeTimeout = 200 * time.Millisecond

// closeSlack is how late past handshakeTimeout a side may close: scheduling
// on a loaded machine, and the race detector.
const closeSlack = 500 * time.Millisecond

// Input modes of the handshake targets: the low two bits pick the variant;
// bit 4 turns compression on (dialer). The hostile side then closes
// (close_notify), so an iteration takes a few milliseconds; what a side does
// when its peer falls silent instead is TestHandshakeTimeouts', since each
// such case lasts a whole handshakeTimeout.

// testPreface is a valid preface for versions 1..1 with a fixed nonce.
var testPreface = codec.AppendPreface(nil, codec.Preface{Min: codec.VersionMin, Max: codec.VersionMax, Nonce: [32]byte{0xfa}})

// gate is a server.Server whose Timeout is handshakeTimeout and whose
// handlers count their calls: no hostile handshake may reach them.
type gate struct {
	srv    *server.Server
	addr   string
	served atomic.Int64
	serve  chan error

	mu   sync.Mutex
	errs map[string]chan error // OnError reports, by remote address
}

var (
	gateOnce sync.Once
	theGate  *gate
	gateErr  error
)

func getGate(t testing.TB) *gate {
	gateOnce.Do(func() {
		theGate, gateErr = newGate(t, func(c *server.Config) { c.ClusterKey = clusterKey })
	})
	if gateErr != nil {
		t.Fatalf("starting the acceptor: %v", gateErr)
	}
	return theGate
}

// newGate starts a gate; mod sets its authentication (a cluster key, or
// Auth for a client port).
func newGate(t testing.TB, mod func(*server.Config)) (*gate, error) {
	cert := testCert(t)
	g := &gate{serve: make(chan error, 1), errs: map[string]chan error{}}
	cfg := server.Config{
		BindAddr:    "127.0.0.1",
		Port:        -1,
		Certificate: &cert,
		NodeID:      "fuzz-gate",
		Timeout:     handshakeTimeout,
		Logger:      discard,
		Conn: conn.Config{
			KeepaliveInterval: -1,
			Compression:       true,
			OnError: func(remote string, err error) {
				select {
				case g.errCh(remote) <- err:
				default:
				}
			},
		},
	}
	mod(&cfg)
	var err error
	if g.srv, err = server.New(cfg); err != nil {
		return nil, err
	}
	count := func(context.Context, *conn.Request) ([]byte, error) {
		g.served.Add(1)
		return nil, nil
	}
	if err = server.HandleRaw(g.srv, "fuzz.Echo", &conn.Route{Mode: conn.ModeInline, Unary: count}); err != nil {
		return nil, err
	}
	err = server.HandleRaw(g.srv, "fuzz.Watch", &conn.Route{Stream: func(context.Context, *conn.Request, *conn.ServerStream) error {
		g.served.Add(1)
		return nil
	}})
	if err != nil {
		return nil, err
	}
	go func() { g.serve <- g.srv.Serve(context.Background()) }()
	g.addr = g.srv.Addr().String()
	atExit(func() {
		_ = g.srv.Close()
		<-g.serve
	})
	return g, nil
}

func (g *gate) errCh(remote string) chan error {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch := g.errs[remote]
	if ch == nil {
		ch = make(chan error, 4)
		g.errs[remote] = ch
	}
	return ch
}

// reported waits for the first error OnError reported for remote.
func (g *gate) reported(t *testing.T, remote string) error {
	t.Helper()
	ch := g.errCh(remote)
	defer func() {
		g.mu.Lock()
		delete(g.errs, remote)
		g.mu.Unlock()
	}()
	select {
	case err := <-ch:
		return err
	case <-time.After(ioTimeout):
		t.Fatal("the acceptor reported no error for a connection it refused")
		return nil
	}
}

// handshakeErr reports whether err is a typed handshake failure: a
// *hawser.TransportError whose cause matches one of the handshake errors, a
// protocol error, a GOAWAY from the peer, or the rpc-timeout deadline; or,
// unless the peer held the connection open, the peer closing it.
func handshakeErr(err error, held bool) bool {
	var te *hawser.TransportError
	if !errors.As(err, &te) {
		return false
	}
	var pe *conn.PeerError
	for _, target := range []error{conn.ErrHandshake, conn.ErrAuth, conn.ErrVersionMismatch, codec.ErrProtocol, context.DeadlineExceeded} {
		if errors.Is(te.Err, target) {
			return true
		}
	}
	if errors.As(te.Err, &pe) {
		return true
	}
	return !held && (errors.Is(te.Err, io.EOF) || errors.Is(te.Err, io.ErrUnexpectedEOF))
}

// FuzzHandshakeAcceptor: a hostile dialer completes TLS with a
// server.Server, then sends, by variant (mode&3), (0) fuzzed bytes instead
// of a preface, (1) a valid preface and fuzzed bytes, (2) a valid preface and
// a HELLO frame with a fuzzed body, or (3) a valid preface, a well-formed
// HELLO whose proof is fuzzed, and fuzzed frames after it. Then it closes
// (close_notify). The acceptor
// must close the connection within its Timeout, send nothing but its
// preface and at most one GOAWAY (Protocol, VersionMismatch or
// Unauthenticated), report a typed error through OnError, and never accept
// the connection: no handler runs.
func FuzzHandshakeAcceptor(f *testing.F) {
	f.Fuzz(func(t *testing.T, mode byte, data []byte) { acceptorCase(t, getGate(t), mode, data, false) })
}

// acceptorCase runs one input; with hold the dialer stays silent after it
// instead of closing.
func acceptorCase(t *testing.T, g *gate, mode byte, data []byte, hold bool) {
	var out []byte
	switch mode & 3 {
	case 0:
		out = data
	case 1:
		out = append(testPreface[:len(testPreface):len(testPreface)], data...)
	case 2:
		out = append(testPreface[:len(testPreface):len(testPreface)], frameOf(codec.Header{Kind: codec.KindHello}, data)...)
	case 3:
		h := codec.Hello{NodeID: "fuzz-hostile", MaxFrame: maxFrame, Features: codec.FeatureS2}
		n := copy(h.Proof[:], data)
		body, err := codec.AppendHello(nil, &h)
		if err != nil {
			t.Fatal(err)
		}
		out = append(testPreface[:len(testPreface):len(testPreface)], frameOf(codec.Header{Kind: codec.KindHello}, body)...)
		out = append(out, data[n:]...)
	}

	start := time.Now()
	nc, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	local := nc.LocalAddr().String()
	_ = nc.SetDeadline(start.Add(handshakeTimeout + ioTimeout))
	tc := tls.Client(nc, conn.ClientTLS("", nil))
	if err := tc.Handshake(); err != nil {
		// Only the acceptor's Timeout may cut the TLS handshake short.
		if rep := g.reported(t, local); time.Since(start) < handshakeTimeout || !errors.Is(rep, context.DeadlineExceeded) {
			t.Fatalf("TLS handshake failed after %v: %v; acceptor reported %v", time.Since(start), err, rep)
		}
		return
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(tc)
		got <- b
	}()
	_, _ = tc.Write(out)
	if !hold {
		_ = tc.CloseWrite()
	}
	in := <-got
	if d := time.Since(start); d > handshakeTimeout+closeSlack {
		t.Fatalf("the acceptor closed the connection after %v, its Timeout is %v", d, handshakeTimeout)
	}
	rep := g.reported(t, local)
	if !handshakeErr(rep, hold) || (hold && !errors.Is(rep, context.DeadlineExceeded)) {
		t.Fatalf("OnError reported %v (%T), want a typed handshake error", rep, rep)
	}
	if err := acceptorSent(in); err != nil {
		t.Fatal(err)
	}
	if n := g.served.Load(); n != 0 {
		t.Fatalf("%d handler calls on a connection that never authenticated", n)
	}
}

// acceptorSent checks what a refusing acceptor sent: its preface, then at
// most one GOAWAY with a handshake code.
func acceptorSent(in []byte) error {
	if len(in) < codec.PrefaceSize {
		return fmt.Errorf("the acceptor sent %d bytes, not even its preface", len(in))
	}
	if _, err := codec.ParsePreface(in[:codec.PrefaceSize]); err != nil {
		return fmt.Errorf("the acceptor's preface: %w", err)
	}
	in = in[codec.PrefaceSize:]
	if len(in) == 0 {
		return nil
	}
	f, n, err := codec.Parse(in, codec.MaxHelloSize)
	if err != nil {
		return fmt.Errorf("after its preface the acceptor sent %d bytes that are not a frame: %w", len(in), err)
	}
	switch {
	case f.Kind != codec.KindGoAway:
		return fmt.Errorf("the acceptor sent %v to a dialer that did not authenticate", f.Kind)
	case f.Code != codec.CodeProtocol && f.Code != codec.CodeVersionMismatch && f.Code != codec.CodeUnauthenticated:
		return fmt.Errorf("handshake GOAWAY with code %v", f.Code)
	case n != len(in):
		return fmt.Errorf("%d bytes after the GOAWAY", len(in)-n)
	}
	return nil
}

// fakeAcceptor is a plain TLS listener (conn.ServerTLS, a certgen
// certificate) that plays a script to each dialer: it writes the script's
// bytes, closes its side (or holds), and returns what the dialer sent.
type fakeAcceptor struct {
	ln      net.Listener
	scripts chan *fakeScript
	wg      sync.WaitGroup
}

type fakeScript struct {
	out  []byte
	hold bool
	got  chan []byte // what the dialer sent until it closed
}

var (
	fakeOnce sync.Once
	theFake  *fakeAcceptor
	fakeEng  *conn.Engine
	fakeErr  error
)

func getFake(t testing.TB) (*fakeAcceptor, *conn.Engine) {
	fakeOnce.Do(func() {
		var ln net.Listener
		if ln, fakeErr = net.Listen("tcp", "127.0.0.1:0"); fakeErr != nil {
			return
		}
		fa := &fakeAcceptor{ln: tls.NewListener(ln, conn.ServerTLS(testCert(t))), scripts: make(chan *fakeScript, 1)}
		if fakeEng, fakeErr = conn.NewEngine(conn.EngineConfig{Loops: 1}); fakeErr != nil {
			_ = ln.Close()
			return
		}
		fa.wg.Add(1)
		go fa.acceptLoop()
		atExit(func() {
			_ = fa.ln.Close()
			fa.wg.Wait()
			_ = fakeEng.Close()
		})
		theFake = fa
	})
	if fakeErr != nil {
		t.Fatalf("starting the fake acceptor: %v", fakeErr)
	}
	return theFake, fakeEng
}

func (fa *fakeAcceptor) acceptLoop() {
	defer fa.wg.Done()
	for {
		nc, err := fa.ln.Accept()
		if err != nil {
			return
		}
		var s *fakeScript
		select {
		case s = <-fa.scripts:
		default: // nobody expects this connection
			_ = nc.Close()
			continue
		}
		fa.wg.Add(1)
		go func() {
			defer fa.wg.Done()
			defer nc.Close()
			tc := nc.(*tls.Conn)
			_ = tc.SetDeadline(time.Now().Add(handshakeTimeout + ioTimeout))
			if err := tc.Handshake(); err != nil {
				s.got <- nil
				return
			}
			done := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(tc)
				done <- b
			}()
			_, _ = tc.Write(s.out)
			if !s.hold {
				_ = tc.CloseWrite()
			}
			s.got <- <-done
		}()
	}
}

// FuzzHandshakeDialer: conn.Dial meets a fake acceptor that answers, by
// variant (mode&3), (0) a valid preface and fuzzed bytes, (1) fuzzed bytes
// instead of a preface, (2) a valid preface and a HELLO_ACK with a fuzzed
// body, or (3) a valid preface and a GOAWAY with a fuzzed code and body;
// then it closes. Dial must fail
// (it cannot succeed: the acceptor's proof needs the cluster key) with a
// typed error within its Timeout, and must have sent exactly its preface
// and one HELLO: a dialer never answers a bad handshake with a GOAWAY.
func FuzzHandshakeDialer(f *testing.F) {
	f.Fuzz(func(t *testing.T, mode byte, data []byte) { dialerCase(t, mode, data, false) })
}

// dialerCase runs one input; with hold the fake acceptor stays silent after
// it instead of closing.
func dialerCase(t *testing.T, mode byte, data []byte, hold bool) {
	fa, eng := getFake(t)
	s := &fakeScript{hold: hold, got: make(chan []byte, 1)}
	switch mode & 3 {
	case 0:
		s.out = append(testPreface[:len(testPreface):len(testPreface)], data...)
	case 1:
		s.out = data
	case 2:
		s.out = append(testPreface[:len(testPreface):len(testPreface)], frameOf(codec.Header{Kind: codec.KindHelloAck}, data)...)
	case 3:
		h := codec.Header{Kind: codec.KindGoAway}
		if len(data) >= 2 {
			h.Code, data = codec.Code(data[0])<<8|codec.Code(data[1]), data[2:]
		}
		s.out = append(testPreface[:len(testPreface):len(testPreface)], frameOf(h, data)...)
	}
	fa.scripts <- s
	cfg := &conn.Config{
		TLS:               conn.ClientTLS("", nil),
		ClusterKey:        clusterKey,
		NodeID:            "fuzz-dialer",
		Timeout:           handshakeTimeout,
		KeepaliveInterval: -1,
		Compression:       mode&0x10 != 0,
		Logger:            discard,
	}
	start := time.Now()
	c, err := conn.Dial(context.Background(), eng, fa.ln.Addr().String(), cfg)
	elapsed := time.Since(start)
	if err == nil {
		_ = c.Close()
		t.Fatal("Dial succeeded against an acceptor that does not hold the cluster key")
	}
	if !handshakeErr(err, s.hold) || (s.hold && !errors.Is(err, context.DeadlineExceeded)) {
		t.Fatalf("Dial failed with %v (%T), want a typed handshake error", err, err)
	}
	if elapsed > handshakeTimeout+closeSlack {
		t.Fatalf("Dial took %v, its Timeout is %v", elapsed, handshakeTimeout)
	}
	var sent []byte
	select {
	case sent = <-s.got:
	case <-time.After(ioTimeout):
		t.Fatal("the dialer did not close the connection")
	}
	if err := dialerSent(sent); err != nil {
		t.Fatal(err)
	}
}

// dialerSent checks what a dialer sent: its preface and one HELLO, nothing
// more.
func dialerSent(in []byte) error {
	if len(in) < codec.PrefaceSize {
		return fmt.Errorf("the dialer sent %d bytes, not even its preface", len(in))
	}
	if _, err := codec.ParsePreface(in[:codec.PrefaceSize]); err != nil {
		return fmt.Errorf("the dialer's preface: %w", err)
	}
	f, n, err := codec.Parse(in[codec.PrefaceSize:], codec.MaxHelloSize)
	if err != nil {
		return fmt.Errorf("the dialer's first frame: %w", err)
	}
	if f.Kind != codec.KindHello {
		return fmt.Errorf("the dialer's first frame is %v, want HELLO", f.Kind)
	}
	if _, err := codec.ParseHello(f.Body); err != nil {
		return fmt.Errorf("the dialer's HELLO: %w", err)
	}
	if rest := len(in) - codec.PrefaceSize - n; rest != 0 {
		return fmt.Errorf("the dialer sent %d bytes after its HELLO", rest)
	}
	return nil
}

// A side whose peer stops in the middle of the handshake closes the
// connection at its Timeout with an error matching
// context.DeadlineExceeded (PROTOCOL.md §5.3): the acceptor (reported to
// OnError) and the dialer (returned by Dial).
func TestHandshakeTimeouts(t *testing.T) {
	partialHello := cat(codec.AppendHeader(nil, codec.Header{Kind: codec.KindHello, Length: 100}), make([]byte, 10))
	partialAck := cat(codec.AppendHeader(nil, codec.Header{Kind: codec.KindHelloAck, Length: 50}), make([]byte, 10))
	cases := []struct {
		name       string
		raw        bool // bytes in place of the preface, else after a valid one
		data, dial []byte
	}{
		{"silent", true, nil, nil},
		{"partial preface", true, testPreface[:20], testPreface[:20]},
		{"preface only", false, nil, nil},
		{"partial header", false, partialHello[:7], partialAck[:7]},
		{"partial body", false, partialHello, partialAck},
	}
	for _, c := range cases {
		// Variant 0 is raw for the acceptor and 1 for the dialer.
		accMode, dialMode := byte(1), byte(0)
		if c.raw {
			accMode, dialMode = 0, 1
		}
		t.Run("acceptor/"+c.name, func(t *testing.T) {
			t.Parallel() // each waits for the acceptor's Timeout
			acceptorCase(t, getGate(t), accMode, c.data, true)
		})
		t.Run("dialer/"+c.name, func(t *testing.T) { dialerCase(t, dialMode, c.dial, true) })
	}
}
