package pool

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/config"
	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/internal/certgen"
	"github.com/hawser-rpc/hawser/internal/leaktest"
	"github.com/hawser-rpc/hawser/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

var key = []byte("pool-test-cluster-key!")

var Echo = hawser.NewMethod[[]byte, []byte]("pool.test.Echo")

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startServer serves Echo on addr ("127.0.0.1:0" for any port). mod, if
// set, edits the configuration; handle, if set, registers more methods
// (state a handler needs belongs to the test that registers it, so tests
// stay independent under -count and -shuffle).
func startServer(t *testing.T, addr string, mod func(*server.Config), handle func(*server.Server) error) (*server.Server, string) {
	t.Helper()
	pair, err := certgen.SelfSigned("localhost")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	if p == 0 {
		p = -1
	}
	cfg := server.Config{BindAddr: host, Port: p, Certificate: &pair.Cert, ClusterKey: key, Logger: quiet()}
	if mod != nil {
		mod(&cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := server.Handle(s, Echo, func(_ context.Context, b []byte) ([]byte, error) { return b, nil }); err != nil {
		t.Fatal(err)
	}
	if handle != nil {
		if err := handle(s); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(); <-done })
	return s, s.Addr().String()
}

// Block waits until its test releases it (see handleBlock).
var Block = hawser.NewMethod[[]byte, []byte]("pool.test.Block")

// handleBlock registers Block, whose calls return once release is closed.
func handleBlock(release <-chan struct{}) func(*server.Server) error {
	return func(s *server.Server) error {
		return server.Handle(s, Block, func(ctx context.Context, b []byte) ([]byte, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return b, nil
		})
	}
}

func newPool(t *testing.T, mod func(*Config)) *Pool {
	t.Helper()
	cfg := Config{Conn: conn.Config{TLS: conn.ClientTLS("", nil), ClusterKey: key}, Logger: quiet()}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// fakeClock records AfterFunc calls; the test fires them. Its time moves
// only by fire and advance. mu guards every field, and the timers' stopped.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	d       time.Duration
	f       func()
	stopped bool // fired or stopped
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.stopped
	t.stopped = true
	return !was
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, d: d, f: f}
	c.timers = append(c.timers, t)
	return t
}

// fire runs the next pending timer, advancing the clock by its delay.
func (c *fakeClock) fire(t *testing.T) time.Duration {
	t.Helper()
	c.mu.Lock()
	var next *fakeTimer
	for _, tm := range c.timers {
		if !tm.stopped {
			next = tm
			break
		}
	}
	if next == nil {
		c.mu.Unlock()
		t.Fatal("no timer pending")
	}
	next.stopped = true
	c.now = c.now.Add(next.d)
	c.mu.Unlock()
	next.f()
	return next.d
}

func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, tm := range c.timers {
		if !tm.stopped {
			n++
		}
	}
	return n
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// Against an address where nothing listens: exactly rpc-retries-max
// attempts, with backoff delays that grow, carry jitter and respect the
// cap; then calls fail fast with ErrPeerUnavailable and no dial happens
// until MarkAlive, which dials at once.
func TestBackoffThenParkThenMarkAlive(t *testing.T) {
	addr := deadAddr(t)
	clock := &fakeClock{now: time.Unix(1000, 0)}
	var dials atomic.Int32
	var states []State
	var smu sync.Mutex
	const base, capD = 100 * time.Millisecond, 300 * time.Millisecond
	p := newPool(t, func(c *Config) {
		c.Clock = clock
		c.RetriesMax = 5
		c.BackoffBase, c.BackoffMax = base, capD
		c.Dial = func(ctx context.Context, e *conn.Engine, a string, cfg *conn.Config) (*conn.Conn, error) {
			dials.Add(1)
			return conn.Dial(ctx, e, a, cfg)
		}
		c.OnStateChange = func(_ string, _, to State) {
			smu.Lock()
			states = append(states, to)
			smu.Unlock()
		}
	})
	peer := p.Peer(addr)
	_, err := Echo.Call(context.Background(), peer, []byte("x"))
	if !errors.Is(err, ErrPeerUnavailable) || !errors.Is(err, syscall.ECONNREFUSED) || !errors.Is(err, hawser.ErrTransport) {
		t.Fatalf("first call: %v", err)
	}
	var delays []time.Duration
	for peer.State() == BackingOff {
		// Calls while backing off fail at once without dialing.
		before := dials.Load()
		if _, err := Echo.Call(context.Background(), peer, nil); !errors.Is(err, ErrPeerUnavailable) {
			t.Fatalf("call while backing off: %v", err)
		}
		if dials.Load() != before {
			t.Fatal("a call dialed while backing off")
		}
		delays = append(delays, clock.fire(t))
		waitFor(t, func() bool { s := peer.State(); return s != Connecting })
	}
	if got := dials.Load(); got != 5 {
		t.Fatalf("%d dial attempts, want rpc-retries-max = 5", got)
	}
	if peer.State() != Parked || clock.pending() != 0 {
		t.Fatalf("state %v with %d timers pending, want parked and none", peer.State(), clock.pending())
	}
	if len(delays) != 4 {
		t.Fatalf("%d backoff delays, want 4 between 5 attempts: %v", len(delays), delays)
	}
	t.Logf("backoff delays: %v", delays)
	for i, d := range delays {
		full := min(base<<i, capD)
		if d < full/2 || d > full {
			t.Fatalf("delay %d = %v outside [%v, %v]", i+1, d, full/2, full)
		}
		if d > capD {
			t.Fatalf("delay %v above the cap %v", d, capD)
		}
		if i > 0 && full < capD && d < delays[i-1] {
			t.Fatalf("delays shrank before the cap: %v", delays)
		}
	}
	// Parked: calls fail at once, nothing is dialed, whatever the time.
	clock.advance(time.Hour)
	for range 10 {
		start := time.Now()
		_, err := Echo.Call(context.Background(), peer, nil)
		var ue *UnavailableError
		if !errors.As(err, &ue) || ue.State != Parked {
			t.Fatalf("parked call: %v", err)
		}
		if time.Since(start) > 50*time.Millisecond {
			t.Fatal("a parked call did not fail fast")
		}
	}
	if dials.Load() != 5 {
		t.Fatal("a parked peer was dialed")
	}
	// The peer comes up; gossip says so; it is dialed at once.
	startServer(t, addr, nil, nil)
	p.MarkAlive(addr)
	waitFor(t, func() bool { return peer.State() == Up })
	if dials.Load() != 6 {
		t.Fatalf("%d dials after MarkAlive, want 6", dials.Load())
	}
	if out, err := Echo.Call(context.Background(), peer, []byte("back")); err != nil || string(out) != "back" {
		t.Fatalf("%q %v", out, err)
	}
	smu.Lock()
	t.Logf("states: %v", states)
	smu.Unlock()
}

func TestBackoffJitterAndCap(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: 10 * time.Second}
	for n := 1; n <= 12; n++ {
		full := min(b.Base<<(n-1), b.Max)
		seen := map[time.Duration]bool{}
		for range 200 {
			d := b.Delay(n)
			if d < full/2 || d > full {
				t.Fatalf("n=%d: %v outside [%v, %v]", n, d, full/2, full)
			}
			seen[d] = true
		}
		if len(seen) < 50 {
			t.Fatalf("n=%d: only %d distinct delays in 200: no jitter", n, len(seen))
		}
	}
}

// Inactivity timeout 200 ms: the idle connection closes and the next call
// dials again.
func TestIdleConnectionRedialedOnDemand(t *testing.T) {
	_, addr := startServer(t, "127.0.0.1:0", nil, nil)
	var dials atomic.Int32
	p := newPool(t, func(c *Config) {
		c.InactivityTimeout = 200 * time.Millisecond
		c.Dial = func(ctx context.Context, e *conn.Engine, a string, cfg *conn.Config) (*conn.Conn, error) {
			dials.Add(1)
			return conn.Dial(ctx, e, a, cfg)
		}
	})
	peer := p.Peer(addr)
	if _, err := Echo.Call(context.Background(), peer, []byte("1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return peer.State() == Idle })
	if peer.Stats().Conns != 0 {
		t.Fatal("idle connection still held")
	}
	if _, err := Echo.Call(context.Background(), peer, []byte("2")); err != nil {
		t.Fatal(err)
	}
	if got := dials.Load(); got != 2 {
		t.Fatalf("%d dials, want 2 (the second after the idle close)", got)
	}
}

// A new connection when every connection has the acceptor's in-flight limit.
func TestSecondConnectionAtInFlightLimit(t *testing.T) {
	release := make(chan struct{})
	_, addr := startServer(t, "127.0.0.1:0", func(c *server.Config) { c.Conn.MaxCalls = 4 }, handleBlock(release))
	p := newPool(t, nil)
	peer := p.Peer(addr)
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := Block.Call(context.Background(), peer, []byte("b")); err != nil {
				t.Error(err)
			}
		}()
	}
	waitFor(t, func() bool { return peer.Stats().Conns >= 2 })
	close(release)
	wg.Wait()
	t.Logf("connections: %d", peer.Stats().Conns)
}

// Hangup closes the connection its call arrives on, before replying.
var Hangup = hawser.NewMethod[[]byte, []byte]("pool.test.Hangup")

func handleHangup(s *server.Server) error {
	return server.Handle(s, Hangup, func(ctx context.Context, b []byte) ([]byte, error) {
		if c, ok := conn.FromContext(ctx); ok {
			_ = c.Close()
		}
		return b, nil
	})
}

// Callers that have chosen a connection but not yet registered their call
// on it count against its limit: a burst that chooses at once (after the
// first dial, say) makes the pool dial a second connection instead of all
// waiting for the first one's slots. TestSecondConnectionAtInFlightLimit
// failed this way once under make stress.
func TestChosenCallsCountAgainstLimit(t *testing.T) {
	_, addr := startServer(t, "127.0.0.1:0", func(c *server.Config) { c.Conn.MaxCalls = 4 }, nil)
	var dials atomic.Int32
	p := newPool(t, func(c *Config) {
		c.Dial = func(ctx context.Context, e *conn.Engine, a string, cfg *conn.Config) (*conn.Conn, error) {
			dials.Add(1)
			return conn.Dial(ctx, e, a, cfg)
		}
	})
	peer := p.Peer(addr)
	if _, err := Echo.Call(context.Background(), peer, nil); err != nil {
		t.Fatal(err)
	}
	var chosen []*conn.Conn
	for range 5 { // choose, as a burst of callers would, before any registers
		c, err := peer.conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		chosen = append(chosen, c)
	}
	waitFor(t, func() bool { return peer.Stats().Conns == 2 })
	for _, c := range chosen {
		peer.unpick(c)
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2", n)
	}
}

// A connection that breaks before StableAfter (by the pool's clock) is a
// failed attempt and waits for the backoff; one that breaks after it is
// re-dialed at once and resets the attempts.
func TestBrokenConnectionRedialed(t *testing.T) {
	_, addr := startServer(t, "127.0.0.1:0", nil, handleHangup)
	clock := &fakeClock{now: time.Unix(1000, 0)}
	var dials atomic.Int32
	p := newPool(t, func(c *Config) {
		c.Clock = clock
		c.Dial = func(ctx context.Context, e *conn.Engine, a string, cfg *conn.Config) (*conn.Conn, error) {
			dials.Add(1)
			return conn.Dial(ctx, e, a, cfg)
		}
	})
	peer := p.Peer(addr)
	ctx := context.Background()
	if _, err := Echo.Call(ctx, peer, nil); err != nil {
		t.Fatal(err)
	}
	// At once: the connection was not stable.
	if _, err := Hangup.Call(ctx, peer, nil); !errors.Is(err, hawser.ErrTransport) {
		t.Fatalf("hang-up call: %v", err)
	}
	waitFor(t, func() bool { return peer.State() == BackingOff && clock.pending() == 1 })
	if st := peer.Stats(); st.Attempts != 1 || !errors.Is(st.LastErr, conn.ErrPeerClosed) || dials.Load() != 1 {
		t.Fatalf("after an early break: %+v after %d dials, want 1 attempt, conn.ErrPeerClosed, 1 dial", st, dials.Load())
	}
	clock.fire(t)
	waitFor(t, func() bool { return peer.State() == Up && peer.Stats().Conns == 1 })
	// Open StableAfter (the default, max(Timeout, BackoffBase) = 1s): the
	// success that forgives the earlier failure.
	clock.advance(time.Second)
	if st := peer.Stats(); st.Attempts != 0 {
		t.Fatalf("a stable connection left %d attempts", st.Attempts)
	}
	if _, err := Hangup.Call(ctx, peer, nil); !errors.Is(err, hawser.ErrTransport) {
		t.Fatalf("hang-up call: %v", err)
	}
	waitFor(t, func() bool { return dials.Load() == 3 && peer.State() == Up && peer.Stats().Conns == 1 })
	if n, st := clock.pending(), peer.Stats(); n != 0 || st.Attempts != 0 {
		t.Fatalf("after a stable connection broke: %d timers pending, %+v; want a dial at once and no attempt counted", n, st)
	}
	if out, err := Echo.Call(ctx, peer, []byte("again")); err != nil || string(out) != "again" {
		t.Fatalf("%q %v", out, err)
	}
}

// MarkDead parks a live peer: calls fail fast until MarkAlive.
func TestMarkDeadParks(t *testing.T) {
	_, addr := startServer(t, "127.0.0.1:0", nil, nil)
	p := newPool(t, nil)
	peer := p.Peer(addr)
	if _, err := Echo.Call(context.Background(), peer, nil); err != nil {
		t.Fatal(err)
	}
	p.MarkDead(addr)
	if _, err := Echo.Call(context.Background(), peer, nil); !errors.Is(err, ErrPeerUnavailable) {
		t.Fatalf("got %v", err)
	}
	p.MarkAlive(addr)
	waitFor(t, func() bool { return peer.State() == Up })
	if _, err := Echo.Call(context.Background(), peer, nil); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// The node file's TLS keys reach the dialer: rpc-tls-domain with rpc-ca-path
// verifies the acceptor's certificate.
func TestConfigFromNodeTLS(t *testing.T) {
	ca, err := certgen.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("node-a.cluster")
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startServer(t, "127.0.0.1:0", func(c *server.Config) { c.Certificate = &leaf.Cert }, nil)
	caPath := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(caPath, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		domain string
		ok     bool
	}{{"node-a.cluster", true}, {"node-b.cluster", false}} {
		cfg, err := ConfigFromNode(config.Node{TLSDomain: tc.domain, CAPath: caPath, ClusterKey: string(key)})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Logger = quiet()
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Echo.Call(context.Background(), p.Peer(addr), []byte("x"))
		var cve *tls.CertificateVerificationError
		if tc.ok && err != nil || !tc.ok && !errors.As(err, &cve) {
			t.Fatalf("domain %s: %v", tc.domain, err)
		}
		_ = p.Close()
	}
	if _, err := ConfigFromNode(config.Node{CAPath: "/nonexistent.pem"}); err == nil {
		t.Fatal("missing rpc-ca-path accepted")
	}
}

// startSilentServer listens on loopback and accepts TCP connections but
// never answers: a dial to it waits in the TLS handshake until its
// deadline.
func startSilentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var accepted []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, nc)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, nc := range accepted {
			_ = nc.Close()
		}
	})
	return ln.Addr().String()
}

// callAndStream makes one Call and opens one stream on peer and returns
// their errors.
func callAndStream(ctx context.Context, peer *Peer) (callErr, streamErr error) {
	_, callErr = peer.Call(ctx, Echo.ID(), []byte("x"))
	s, streamErr := peer.OpenStream(ctx, Echo.ID(), []byte("x"))
	if s != nil {
		_ = s.Close()
	}
	return callErr, streamErr
}

// After Close, Call and OpenStream fail at once with ErrPoolClosed: on a
// peer that was connected, on one created before Close that never dialed,
// on one created after Close, and for callers already waiting on a dial.
func TestClosedPoolFailsAtOnce(t *testing.T) {
	_, addr := startServer(t, "127.0.0.1:0", nil, nil)
	// A caller's context: a call still blocked after Close ends with it
	// and shows up as a deadline error, not as ErrPoolClosed.
	callerCtx := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	check := func(t *testing.T, what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrPoolClosed) || !errors.Is(err, hawser.ErrTransport) {
			t.Errorf("%s after Close: %v, want ErrPoolClosed", what, err)
		}
	}
	t.Run("peers before and after Close", func(t *testing.T) {
		ctx := callerCtx(t)
		p := newPool(t, nil)
		connected := p.Peer(addr)
		if _, err := Echo.Call(ctx, connected, []byte("x")); err != nil {
			t.Fatal(err)
		}
		unused := p.Peer(deadAddr(t))
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		for name, peer := range map[string]*Peer{
			"connected peer":           connected,
			"peer never dialed":        unused,
			"peer created after Close": p.Peer(deadAddr(t)),
		} {
			callErr, streamErr := callAndStream(ctx, peer)
			check(t, name+": Call", callErr)
			check(t, name+": OpenStream", streamErr)
		}
	})
	t.Run("callers waiting on a dial", func(t *testing.T) {
		ctx := callerCtx(t)
		silent := startSilentServer(t)
		p := newPool(t, func(c *Config) {
			c.Timeout = 10 * time.Second // the dial would outlast the callers' contexts
		})
		peer := p.Peer(silent)
		errs := make(chan error, 2)
		var callers sync.WaitGroup
		callers.Add(2)
		go func() {
			defer callers.Done()
			_, err := peer.Call(ctx, Echo.ID(), []byte("x"))
			errs <- err
		}()
		go func() {
			defer callers.Done()
			s, err := peer.OpenStream(ctx, Echo.ID(), []byte("x"))
			if s != nil {
				_ = s.Close()
			}
			errs <- err
		}()
		waitFor(t, func() bool { return peer.State() == Connecting }) // the dial hangs in TLS
		closed := make(chan error, 1)
		go func() { closed <- p.Close() }()
		deadline := time.NewTimer(time.Second)
		defer deadline.Stop()
		for waiting := 2; waiting > 0; {
			select {
			case err := <-errs:
				check(t, "caller waiting on the dial", err)
				waiting--
			case <-deadline.C:
				t.Errorf("%d callers waiting on a dial still wait 1s after Close", waiting)
				callers.Wait() // until their contexts end
				waiting = 0
			}
		}
		select {
		case <-closed:
		case <-deadline.C:
			t.Error("Close still waits for the dial in progress 1s later")
			<-closed // until the dial's rpc-timeout
		}
		callers.Wait()
	})
}

// echoRouter serves Echo inline, for a server built on conn.Accept alone.
type echoRouter struct{}

func (echoRouter) Route(m uint64) *conn.Route {
	if m != Echo.ID() {
		return nil
	}
	return &conn.Route{Mode: conn.ModeInline, Unary: func(_ context.Context, r *conn.Request) ([]byte, error) {
		return r.Payload, nil
	}}
}
func (echoRouter) Methods() []uint64     { return []uint64{Echo.ID()} }
func (echoRouter) Submit(conn.Task) bool { return false }
func (echoRouter) Go(f func())           { go f() }

// startHangUpServer listens on loopback, completes the hawser handshake
// (TLS and cluster key) of every connection, then closes it at once: a
// peer that breaks each connection right after accepting it. It returns
// the address and the number of handshakes completed so far.
func startHangUpServer(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	pair, err := certgen.SelfSigned("localhost")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := conn.NewEngine(conn.EngineConfig{Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = eng.Close()
		t.Fatal(err)
	}
	cfg := &conn.Config{TLS: conn.ServerTLS(pair.Cert), ClusterKey: key, Router: echoRouter{}}
	var handshakes atomic.Int32
	var wg sync.WaitGroup // the accept loop and its handshakes
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return // the listener closed
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := conn.Accept(context.Background(), eng, nc, cfg)
				if err != nil {
					return
				}
				handshakes.Add(1)
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		_ = eng.Close()
	})
	return ln.Addr().String(), &handshakes
}

// A connection that closes before the dial that made it hands it to the
// peer is not kept: the dial counts as failed (the peer backs off), the
// peer never reports Up over dead connections, and no dial goes past
// MaxConnsPerPeer.
func TestConnClosedBeforeAdoptionIsAFailedDial(t *testing.T) {
	addr, _ := startHangUpServer(t)
	clock := &fakeClock{now: time.Unix(1000, 0)}
	var dials, deadOnArrival atomic.Int32
	p := newPool(t, func(c *Config) {
		c.Clock = clock
		c.Dial = func(ctx context.Context, e *conn.Engine, a string, cfg *conn.Config) (*conn.Conn, error) {
			dials.Add(1)
			c, err := conn.Dial(ctx, e, a, cfg)
			if err != nil {
				return nil, err
			}
			// Hand the connection over only once the server's close has
			// reached it, so that it is dead before the peer adopts it.
			deadline := time.NewTimer(5 * time.Second)
			defer deadline.Stop()
			select {
			case <-c.Done():
				deadOnArrival.Add(1)
			case <-deadline.C:
				t.Error("the hang-up server did not close the connection")
			}
			return c, nil
		}
	})
	peer := p.Peer(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := Echo.Call(ctx, peer, []byte("x"))
	st := peer.Stats()
	if !errors.Is(err, ErrPeerUnavailable) {
		t.Errorf("call: %v, want ErrPeerUnavailable", err)
	}
	if st.State != BackingOff || st.Conns != 0 || st.Attempts != 1 || dials.Load() != 1 {
		t.Errorf("after one dead connection: %+v after %d dials, want backing-off, 0 connections, 1 attempt, 1 dial", st, dials.Load())
	}
	if st.Conns > DefaultMaxConnsPerPeer {
		t.Errorf("%d connections held, above MaxConnsPerPeer = %d", st.Conns, DefaultMaxConnsPerPeer)
	}
	if deadOnArrival.Load() == 0 {
		t.Error("no dial handed over a closed connection: the test did not exercise the case")
	}
}

// A peer whose connections break right after each handshake is not
// redialed at once: each break counts as a failed attempt, so the dials
// wait for the backoff timers (the fake clock fires them one by one) and
// the peer is parked after RetriesMax breaks.
func TestBreakAfterHandshakeBacksOffAndParks(t *testing.T) {
	addr, handshakes := startHangUpServer(t)
	clock := &fakeClock{now: time.Unix(1000, 0)}
	var dials atomic.Int32
	const retries = 4
	const base, capD = 100 * time.Millisecond, 250 * time.Millisecond
	p := newPool(t, func(c *Config) {
		c.Clock = clock
		c.RetriesMax = retries
		c.BackoffBase, c.BackoffMax = base, capD
		c.Dial = func(ctx context.Context, e *conn.Engine, a string, cfg *conn.Config) (*conn.Conn, error) {
			dials.Add(1)
			return conn.Dial(ctx, e, a, cfg)
		}
	})
	peer := p.Peer(addr)
	// The first dial; the call may even succeed, if the server's loop
	// serves it before the close.
	_, _ = Echo.Call(context.Background(), peer, []byte("x"))
	var delays []time.Duration
	for fired := 0; ; fired++ {
		// Wait for the break to be counted: a backoff timer (or parking).
		// A dial beyond one per fired timer ends the wait too: it is
		// the redial without backoff this test is about.
		waitFor(t, func() bool {
			s := peer.State()
			return int(dials.Load()) > fired+1 || s == Parked || s == BackingOff && clock.pending() == 1
		})
		if got := int(dials.Load()); got != fired+1 {
			t.Fatalf("%d dials after %d backoff timers fired: a broken connection was redialed without backoff", got, fired)
		}
		if peer.State() == Parked {
			break
		}
		if _, err := Echo.Call(context.Background(), peer, nil); !errors.Is(err, ErrPeerUnavailable) {
			t.Fatalf("call while backing off: %v", err)
		}
		delays = append(delays, clock.fire(t))
	}
	st := peer.Stats()
	if st.Attempts != retries || dials.Load() != retries || clock.pending() != 0 {
		t.Fatalf("parked with %+v after %d dials, %d timers pending; want %d attempts and dials, none pending", st, dials.Load(), clock.pending(), retries)
	}
	if !errors.Is(st.LastErr, conn.ErrPeerClosed) {
		t.Errorf("last error %v, want the break (conn.ErrPeerClosed)", st.LastErr)
	}
	if handshakes.Load() == 0 {
		t.Error("no handshake completed: the test saw failed dials, not broken connections")
	}
	for i, d := range delays {
		full := min(base<<i, capD)
		if d < full/2 || d > full {
			t.Errorf("delay %d = %v outside [%v, %v]", i+1, d, full/2, full)
		}
	}
	t.Logf("backoff delays: %v; handshakes completed: %d of %d dials", delays, handshakes.Load(), dials.Load())
	var ue *UnavailableError
	if _, err := Echo.Call(context.Background(), peer, nil); !errors.As(err, &ue) || ue.State != Parked {
		t.Fatalf("parked call: %v", err)
	}
}

// A dedicated connection is never picked for calls, is closed by MarkDead
// and Close, and is refused while the peer is parked.
func TestDedicatedConnection(t *testing.T) {
	_, addr := startServer(t, "127.0.0.1:0", nil, nil)
	p := newPool(t, nil)
	peer := p.Peer(addr)
	ctx := context.Background()
	d, err := peer.Dedicated(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := peer.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if shared == d {
		t.Fatal("Conn picked the dedicated connection")
	}
	for i := 0; i < 20; i++ {
		if _, err := Echo.Call(ctx, peer, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if st := peer.Stats(); st.Conns != 1 {
		t.Fatalf("the peer counts %d shared connections, want 1 (the dedicated one is not one)", st.Conns)
	}
	if _, err := Echo.Call(ctx, d, []byte("on the dedicated one")); err != nil {
		t.Fatal(err)
	}
	p.MarkDead(addr)
	select {
	case <-d.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("MarkDead left the dedicated connection open")
	}
	if _, err := peer.Dedicated(ctx); !errors.Is(err, ErrPeerUnavailable) {
		t.Fatalf("Dedicated on a parked peer: %v", err)
	}
	p.MarkAlive(addr)
	waitFor(t, func() bool { return peer.State() == Up })
	d2, err := peer.Dedicated(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	select {
	case <-d2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Close left the dedicated connection open")
	}
	if _, err := peer.Dedicated(ctx); !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("Dedicated after Close: %v", err)
	}
}
