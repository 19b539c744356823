package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/client"
	"github.com/hawser-rpc/hawser/conn"
	"github.com/hawser-rpc/hawser/server"
)

var (
	rcGet   = hawser.NewMethod[*u64, *u64]("rc.Get", hawser.Idempotent())
	rcPut   = hawser.NewMethod[*u64, *u64]("rc.Put")
	rcTicks = hawser.NewStream[*u64, *u64]("rc.Ticks", hawser.Resubscribable())
	rcPlain = hawser.NewStream[*u64, *u64]("rc.Plain")
	rcFlow  = hawser.NewFlow[*u64, *u64]("rc.transfer")
)

// rcHandlers serves the rc.* definitions and counts their runs across
// restarts. The first run of rc.Put or rc.transfer with an odd argument
// blocks until released (or, if blockCtx, until its context ends),
// signalling entered first; rc.Ticks sends 0, 1, 2, … one a millisecond
// until cancelled.
type rcHandlers struct {
	runs     sync.Map // "name/arg" -> *atomic.Int32
	entered  chan string
	release  chan struct{}
	blockCtx bool
}

func newRCHandlers(blockCtx bool) *rcHandlers {
	return &rcHandlers{entered: make(chan string, 64), release: make(chan struct{}), blockCtx: blockCtx}
}

func (h *rcHandlers) counter(name string, arg uint64) *atomic.Int32 {
	v, _ := h.runs.LoadOrStore(name+"/"+strconv.FormatUint(arg, 10), new(atomic.Int32))
	return v.(*atomic.Int32)
}

func (h *rcHandlers) ran(name string, arg uint64) int32 { return h.counter(name, arg).Load() }

func (h *rcHandlers) block(ctx context.Context, name string, arg uint64, run int32) error {
	if arg%2 == 0 || run > 1 {
		return nil
	}
	h.entered <- fmt.Sprintf("%s/%d", name, arg)
	if h.blockCtx {
		<-ctx.Done()
		return ctx.Err()
	}
	<-h.release
	return nil
}

func (h *rcHandlers) register(t testing.TB, srv *server.Server) {
	unary := func(name string) func(context.Context, *u64) (*u64, error) {
		return func(ctx context.Context, r *u64) (*u64, error) {
			run := h.counter(name, r.V).Add(1)
			if err := h.block(ctx, name, r.V, run); err != nil {
				return nil, err
			}
			return &u64{r.V + 1}, nil
		}
	}
	must(t, server.Handle(srv, rcGet, func(_ context.Context, r *u64) (*u64, error) {
		h.counter("rc.Get", 0).Add(1)
		return &u64{r.V + 1}, nil
	}))
	must(t, server.Handle(srv, rcPut, unary("rc.Put")))
	must(t, server.RegisterFlow(srv, rcFlow, unary("rc.transfer")))
	ticks := func(ctx context.Context, _ *u64, out hawser.Sender[*u64]) error {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := uint64(0); ; i++ {
			if err := out.Send(&u64{i}); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
	}
	must(t, server.HandleStream(srv, rcTicks, ticks))
	must(t, server.HandleStream(srv, rcPlain, ticks))
}

// restartNode is a client port that can be killed (Close) or shut down
// and started again: a new server.Server on the same host:port.
type restartNode struct {
	t     testing.TB
	svc   *auth.Service
	setup func(*server.Server)
	port  int // 0 until the first start

	mu   sync.Mutex
	srv  *server.Server
	done chan error
}

func newRestartNode(t testing.TB, svc *auth.Service, setup func(*server.Server)) *restartNode {
	n := &restartNode{t: t, svc: svc, setup: setup}
	n.start()
	t.Cleanup(func() {
		if n.running() {
			n.kill()
		}
	})
	return n
}

func (n *restartNode) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)) }

func (n *restartNode) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv != nil
}

func (n *restartNode) server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// start serves on the node's port (a free one the first time), with svc
// unless another service is given.
func (n *restartNode) start(svc ...*auth.Service) {
	n.t.Helper()
	cfg := server.Config{BindAddr: "127.0.0.1", Port: -1, Auth: n.svc, PlatformVersion: 3,
		Certificate: &testCert(n.t).Cert, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if n.port != 0 {
		cfg.Port = n.port
	}
	if len(svc) > 0 {
		cfg.Auth = svc[0]
	}
	srv, err := server.New(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	n.setup(srv)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	<-srv.Ready()
	if srv.Addr() == nil {
		n.t.Fatalf("restart on port %d: %v", n.port, <-done)
	}
	n.port = srv.Addr().(*net.TCPAddr).Port
	n.mu.Lock()
	n.srv, n.done = srv, done
	n.mu.Unlock()
}

func (n *restartNode) take() (*server.Server, chan error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	srv, done := n.srv, n.done
	n.srv, n.done = nil, nil
	return srv, done
}

// kill closes the server at once: calls in flight fail on the client.
func (n *restartNode) kill() {
	n.t.Helper()
	srv, done := n.take()
	if err := srv.Close(); err != nil {
		n.t.Errorf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, server.ErrServerClosed) {
		n.t.Errorf("Serve: %v", err)
	}
}

// shutdown shuts the server down gracefully and says whether the drain
// ended within limit.
func (n *restartNode) shutdown(limit time.Duration) error {
	srv, done := n.take()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	err := srv.Shutdown(ctx)
	if serr := <-done; !errors.Is(serr, server.ErrServerClosed) {
		n.t.Errorf("Serve: %v", serr)
	}
	return err
}

// fastBackoff keeps the tests' reconnects short.
var fastBackoff = client.WithBackoff(client.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond})

func startReconnecting(t testing.TB, addrs []string, opts ...client.Option) *client.Reconnecting {
	t.Helper()
	opts = append([]client.Option{client.WithPinnedCertificate(testCert(t).CertPEM), fastBackoff}, opts...)
	r, err := client.StartReconnecting(context.Background(), addrs, "admin", "a", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// recv receives from ch, failing after 20 s.
func recv[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	panic("unreachable")
}

// The "done when" test: a server restarted 10 times on one address,
// alternately killed (Close) and shut down, while a reconnecting client
// loops over idempotent calls, starts one non-idempotent flow per
// restart, and reads a resubscribable stream. Every idempotent call
// succeeds; no flow runs twice, and each start either succeeds (having
// run once) or fails with the maybe-executed error; the stream delivers
// after every restart, starting again at item 0 after exactly one
// ErrResubscribed per reconnect; every graceful shutdown drains in time
// (the client moved its stream off the draining connection).
func TestReconnectSurvivesRestarts(t *testing.T) {
	const restarts = 10
	h := newRCHandlers(true)
	n := newRestartNode(t, service(t, auth.LoginLimit{}, users...), func(srv *server.Server) { h.register(t, srv) })
	var reconnects, disconnects atomic.Int32
	r := startReconnecting(t, []string{n.addr()},
		client.OnReconnect(func(string) { reconnects.Add(1) }),
		client.OnDisconnect(func(error) { disconnects.Add(1) }))

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	var calls, callErrs atomic.Int64
	var firstCallErr atomic.Value
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(g); ctx.Err() == nil; i += 2 {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				out, err := rcGet.Call(cctx, r, &u64{i})
				cancel()
				switch {
				case ctx.Err() != nil:
					return
				case err == nil && out.V != i+1:
					err = fmt.Errorf("rc.Get(%d) answered %d", i, out.V)
				}
				if err != nil {
					callErrs.Add(1)
					firstCallErr.CompareAndSwap(nil, err)
					continue
				}
				calls.Add(1)
			}
		}()
	}

	stream, err := rcTicks.Open(ctx, r, &u64{})
	if err != nil {
		t.Fatal(err)
	}
	var markers, sinceMarker atomic.Int64
	streamErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		want := uint64(0)
		for it, err := range stream.All() {
			switch {
			case errors.Is(err, hawser.ErrResubscribed):
				markers.Add(1)
				sinceMarker.Store(0)
				want = 0
			case err != nil:
				if ctx.Err() == nil {
					streamErr <- err
				}
				return
			case it.V != want:
				streamErr <- fmt.Errorf("after %d markers: item %d, want %d", markers.Load(), it.V, want)
				return
			default:
				want++
				sinceMarker.Add(1)
			}
		}
		streamErr <- errors.New("the stream ended")
	}()

	flowErrs := make([]error, restarts+1)
	progress := func(cycle int) {
		t.Helper()
		base := calls.Load()
		waitFor(t, fmt.Sprintf("progress after restart %d", cycle), func() bool {
			select {
			case err := <-streamErr:
				t.Fatalf("stream: %v", err)
			default:
			}
			return calls.Load() >= base+20 && markers.Load() == int64(cycle) && sinceMarker.Load() >= 5 &&
				reconnects.Load() == int32(cycle)
		})
	}
	progress(0)
	for i := 1; i <= restarts; i++ {
		arg := uint64(i)
		graceful := i%2 == 0
		flowDone := make(chan error, 1)
		go func() {
			_, err := rcFlow.Start(context.Background(), r, &u64{arg})
			flowDone <- err
		}()
		if graceful {
			// rc.transfer with an even argument returns at once; the
			// start races the shutdown.
			if err := n.shutdown(10 * time.Second); err != nil {
				t.Fatalf("restart %d: Shutdown did not drain: %v", i, err)
			}
		} else {
			if got := recv(t, "h.entered", h.entered); got != fmt.Sprintf("rc.transfer/%d", arg) {
				t.Fatalf("entered %s", got)
			}
			n.kill()
		}
		n.start()
		flowErrs[i] = recv(t, "flowDone", flowDone)
		progress(i)
	}
	stop()
	wg.Wait()
	select {
	case err := <-streamErr:
		t.Fatalf("stream: %v", err)
	default:
	}
	if e := callErrs.Load(); e != 0 {
		t.Fatalf("%d idempotent calls failed; the first: %v", e, firstCallErr.Load())
	}
	maybe := 0
	for i := 1; i <= restarts; i++ {
		runs, err := h.ran("rc.transfer", uint64(i)), flowErrs[i]
		switch {
		case runs > 1:
			t.Errorf("flow %d ran %d times", i, runs)
		case err == nil && runs != 1:
			t.Errorf("flow %d succeeded after %d runs", i, runs)
		case err != nil && !errors.Is(err, hawser.ErrMaybeExecuted):
			t.Errorf("flow %d: %v", i, err)
		case err != nil:
			maybe++
			var me *client.MaybeExecutedError
			if !errors.As(err, &me) || !errors.Is(err, hawser.ErrTransport) {
				t.Errorf("flow %d: %v is not a *MaybeExecutedError over a transport error", i, err)
			}
		}
		if i%2 == 1 && err == nil {
			t.Errorf("flow %d was in flight when its server was killed, and succeeded", i)
		}
	}
	if m, rc, dc := markers.Load(), reconnects.Load(), disconnects.Load(); m != restarts || rc != restarts || dc != restarts {
		t.Fatalf("%d ErrResubscribed markers, %d reconnects, %d disconnects; want %d each", m, rc, dc, restarts)
	}
	t.Logf("%d idempotent calls, %d of %d flows maybe executed", calls.Load(), maybe, restarts)
}

// Listeners: OnDisconnect with the cause (conn.ErrGoAway for a graceful
// shutdown), OnReconnect with the address; a login refused with
// ErrLoginFailed after a restart is a permanent failure: OnPermanentFailure
// runs once, Done closes, Err and later calls say why.
func TestReconnectListeners(t *testing.T) {
	h := newRCHandlers(true)
	n := newRestartNode(t, service(t, auth.LoginLimit{}, users...), func(srv *server.Server) { h.register(t, srv) })
	disc, reco, fail := make(chan error, 8), make(chan string, 8), make(chan error, 8)
	r := startReconnecting(t, []string{n.addr()},
		client.OnDisconnect(func(err error) { disc <- err }),
		client.OnReconnect(func(addr string) { reco <- addr }),
		client.OnPermanentFailure(func(err error) { fail <- err }))
	ctx := context.Background()
	if r.PlatformVersion() != 3 || r.Addr() != n.addr() {
		t.Fatalf("platform %d, addr %q", r.PlatformVersion(), r.Addr())
	}

	n.kill()
	if err := recv(t, "disc", disc); !errors.Is(err, hawser.ErrTransport) {
		t.Fatalf("disconnect cause %v", err)
	}
	n.start()
	if addr := recv(t, "reco", reco); addr != n.addr() {
		t.Fatalf("reconnected to %q", addr)
	}
	if _, err := rcGet.Call(ctx, r, &u64{1}); err != nil {
		t.Fatal(err)
	}

	if err := n.shutdown(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, "disc", disc); !errors.Is(err, conn.ErrGoAway) || !errors.Is(err, hawser.ErrTransport) {
		t.Fatalf("graceful shutdown: cause %v", err)
	}
	// The server comes back where admin's password is another.
	n.start(service(t, auth.LoginLimit{}, auth.UserConfig{Username: "admin", Password: "changed", Permissions: []string{"ALL"}}))
	err := recv(t, "fail", fail)
	var gave *client.GaveUpError
	if !errors.Is(err, client.ErrGaveUp) || !errors.Is(err, hawser.ErrLoginFailed) || !errors.As(err, &gave) || gave.Attempts < 1 {
		t.Fatalf("permanent failure %v", err)
	}
	recv(t, "r.Done()", r.Done())
	if !errors.Is(r.Err(), hawser.ErrLoginFailed) {
		t.Fatalf("Err %v", r.Err())
	}
	if _, err := rcGet.Call(ctx, r, &u64{1}); !errors.Is(err, client.ErrGaveUp) {
		t.Fatalf("a call after the failure: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-disc:
		t.Fatalf("a second disconnect: %v", err)
	case addr := <-reco:
		t.Fatalf("a reconnect to %s", addr)
	case err := <-fail:
		t.Fatalf("a second permanent failure: %v", err)
	default:
	}
	if r.Addr() != "" {
		t.Fatal("Addr after the failure")
	}

	// A wrong password at the start fails StartReconnecting at once.
	if _, err := client.StartReconnecting(ctx, []string{n.addr()}, "admin", "a", client.WithPinnedCertificate(testCert(t).CertPEM)); !errors.Is(err, hawser.ErrLoginFailed) {
		t.Fatalf("StartReconnecting with a wrong password: %v", err)
	}
}

// With MaxAttempts, a server that stays down ends the client after that
// many failed attempts.
func TestReconnectMaxAttempts(t *testing.T) {
	h := newRCHandlers(true)
	n := newRestartNode(t, service(t, auth.LoginLimit{}, users...), func(srv *server.Server) { h.register(t, srv) })
	fail := make(chan error, 1)
	r := startReconnecting(t, []string{n.addr()},
		client.WithBackoff(client.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, MaxAttempts: 3}),
		client.OnPermanentFailure(func(err error) { fail <- err }))
	n.kill()
	err := recv(t, "fail", fail)
	var gave *client.GaveUpError
	if !errors.As(err, &gave) || gave.Attempts != 3 || !errors.Is(err, hawser.ErrTransport) {
		t.Fatalf("got %v, want a GaveUpError after 3 attempts over a transport error", err)
	}
	recv(t, "r.Done()", r.Done())
	// StartReconnecting itself gives up the same way.
	_, err = client.StartReconnecting(context.Background(), []string{n.addr()}, "admin", "a", client.WithPinnedCertificate(testCert(t).CertPEM),
		client.WithBackoff(client.Backoff{Initial: time.Millisecond, MaxAttempts: 2}))
	if !errors.As(err, &gave) || gave.Attempts != 2 {
		t.Fatalf("StartReconnecting to a dead address: %v", err)
	}
}

// ErrLoginLimited is retried: a client whose source address is locked out
// when it reconnects logs in once the lockout ends.
func TestReconnectRetriesLoginLimited(t *testing.T) {
	svc := service(t, auth.LoginLimit{Failures: 1, Window: time.Minute, Lockout: 500 * time.Millisecond}, users...)
	h := newRCHandlers(true)
	n := newRestartNode(t, svc, func(srv *server.Server) { h.register(t, srv) })
	reco := make(chan string, 1)
	r := startReconnecting(t, []string{n.addr()}, client.OnReconnect(func(a string) { reco <- a }))
	// The one failure that locks 127.0.0.1 out, the client's address too.
	if _, err := client.Start(context.Background(), n.addr(), "admin", "wrong", client.WithPinnedCertificate(testCert(t).CertPEM)); !errors.Is(err, hawser.ErrLoginFailed) {
		t.Fatalf("the failure that locks: %v", err)
	}
	limited := svc.Stats().Limited
	n.kill()
	n.start()
	recv(t, "reco", reco)
	if svc.Stats().Limited == limited {
		t.Fatal("the client logged in again without being refused during the lockout")
	}
	if _, err := rcGet.Call(context.Background(), r, &u64{1}); err != nil {
		t.Fatal(err)
	}
	if r.Err() != nil {
		t.Fatalf("Err %v", r.Err())
	}
}

// A non-idempotent call or flow start in flight when its server is killed
// fails with the maybe-executed error and is not sent again (its handler
// ran once); an idempotent one is sent again and succeeds; a call made
// while there is no connection waits for one, up to its context.
func TestReconnectInFlightCalls(t *testing.T) {
	h := newRCHandlers(true)
	n := newRestartNode(t, service(t, auth.LoginLimit{}, users...), func(srv *server.Server) { h.register(t, srv) })
	r := startReconnecting(t, []string{n.addr()})
	ctx := context.Background()
	put, flow := make(chan error, 1), make(chan error, 1)
	go func() { _, err := rcPut.Call(ctx, r, &u64{1}); put <- err }()
	go func() { _, err := rcFlow.Start(ctx, r, &u64{3}); flow <- err }()
	for range 2 {
		recv(t, "h.entered", h.entered)
	}
	n.kill()
	for name, ch := range map[string]chan error{"rc.Put": put, "rc.transfer": flow} {
		err := recv(t, "ch", ch)
		var me *client.MaybeExecutedError
		if !errors.Is(err, hawser.ErrMaybeExecuted) || !errors.As(err, &me) || !errors.Is(err, hawser.ErrTransport) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	waitFor(t, "the client to see the loss", func() bool { return r.Addr() == "" })
	// Nothing to send to: a call waits, up to its context.
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := rcPut.Call(short, r, &u64{4}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call while disconnected: %v", err)
	}
	waiting := make(chan error, 1)
	go func() { _, err := rcPut.Call(ctx, r, &u64{6}); waiting <- err }()
	n.start()
	if err := recv(t, "waiting", waiting); err != nil {
		t.Fatalf("the call that waited: %v", err)
	}
	if h.ran("rc.Put", 1) != 1 || h.ran("rc.transfer", 3) != 1 || h.ran("rc.Put", 4) != 0 || h.ran("rc.Put", 6) != 1 {
		t.Fatalf("runs: put 1 %d, flow 3 %d, put 4 %d, put 6 %d", h.ran("rc.Put", 1), h.ran("rc.transfer", 3), h.ran("rc.Put", 4), h.ran("rc.Put", 6))
	}

	// An idempotent method whose handler is in flight at the kill is sent
	// again, and its second run answers.
	idem := hawser.NewMethod[*u64, *u64]("rc.Put", hawser.Idempotent()) // rc.Put's definition, declared idempotent
	got := make(chan error, 1)
	go func() {
		out, err := idem.Call(ctx, r, &u64{7})
		if err == nil && out.V != 8 {
			err = fmt.Errorf("answered %d", out.V)
		}
		got <- err
	}()
	recv(t, "h.entered", h.entered)
	n.kill()
	n.start()
	if err := recv(t, "got", got); err != nil {
		t.Fatalf("idempotent call: %v", err)
	}
	if runs := h.ran("rc.Put", 7); runs != 2 {
		t.Fatalf("the idempotent call ran %d times, want 2 (one per server)", runs)
	}
}

// A non-idempotent call with a request ID whose connection is cut is sent
// again on the next connection to the same server, whose request-ID table
// makes the repeat wait for the first run's outcome: one run, the reply
// delivered. Without the ID the same call fails as maybe executed.
func TestReconnectRequestIDSentAgain(t *testing.T) {
	h := newRCHandlers(false) // the handler outlives its connection
	n := newRestartNode(t, service(t, auth.LoginLimit{}, users...), func(srv *server.Server) { h.register(t, srv) })
	p := newProxy(t, n.addr())
	reco := make(chan string, 4)
	r := startReconnecting(t, []string{p.addr}, client.OnReconnect(func(a string) { reco <- a }))
	ctx := context.Background()
	id := hawser.NewRequestID()
	got, plain := make(chan error, 1), make(chan error, 1)
	go func() {
		out, err := rcFlow.Start(ctx, r, &u64{5}, hawser.WithRequestID(id))
		if err == nil && out.V != 6 {
			err = fmt.Errorf("answered %d", out.V)
		}
		got <- err
	}()
	go func() { _, err := rcPut.Call(ctx, r, &u64{9}); plain <- err }()
	recv(t, "h.entered", h.entered)
	recv(t, "h.entered", h.entered)
	p.cut()
	if err := recv(t, "plain", plain); !errors.Is(err, hawser.ErrMaybeExecuted) {
		t.Fatalf("without a request ID: %v", err)
	}
	recv(t, "reco", reco)
	waitFor(t, "the repeat to wait on the server", func() bool { return n.server().DedupStats().Waiting == 1 })
	close(h.release)
	if err := recv(t, "got", got); err != nil {
		t.Fatalf("with a request ID: %v", err)
	}
	if runs := h.ran("rc.transfer", 5); runs != 1 {
		t.Fatalf("the flow ran %d times", runs)
	}
	if st := n.server().DedupStats(); st.Waited != 1 {
		t.Fatalf("dedup stats %+v", st)
	}
}

// A call with a request ID in flight when its server is killed is not
// sent to the restarted server: its request-ID table is a new one, which
// does not know the call.
func TestReconnectRequestIDNotSentToRestartedServer(t *testing.T) {
	h := newRCHandlers(true)
	n := newRestartNode(t, service(t, auth.LoginLimit{}, users...), func(srv *server.Server) { h.register(t, srv) })
	r := startReconnecting(t, []string{n.addr()})
	got := make(chan error, 1)
	go func() {
		_, err := rcFlow.Start(context.Background(), r, &u64{11}, hawser.WithRequestID(hawser.NewRequestID()))
		got <- err
	}()
	recv(t, "h.entered", h.entered)
	n.kill()
	n.start()
	err := recv(t, "got", got)
	var me *client.MaybeExecutedError
	if !errors.Is(err, hawser.ErrMaybeExecuted) || !errors.As(err, &me) || !errors.Is(err, hawser.ErrTransport) {
		t.Fatalf("got %v", err)
	}
	if _, err := rcGet.Call(context.Background(), r, &u64{1}); err != nil { // the client is back
		t.Fatal(err)
	}
	if runs := h.ran("rc.transfer", 11); runs != 1 {
		t.Fatalf("the flow ran %d times", runs)
	}
}

// Addresses are tried in order, and in turn after a loss: from the one
// after the lost one.
func TestReconnectRoundRobin(t *testing.T) {
	svc := service(t, auth.LoginLimit{}, users...)
	h := newRCHandlers(true)
	a := newRestartNode(t, svc, func(srv *server.Server) { h.register(t, srv) })
	b := newRestartNode(t, svc, func(srv *server.Server) { h.register(t, srv) })
	dead := newRestartNode(t, svc, func(srv *server.Server) { h.register(t, srv) })
	dead.kill()
	reco := make(chan string, 4)
	r := startReconnecting(t, []string{dead.addr(), a.addr(), b.addr()}, client.OnReconnect(func(s string) { reco <- s }))
	if r.Addr() != a.addr() {
		t.Fatalf("first connection to %s, want %s (the first that answers)", r.Addr(), a.addr())
	}
	a.kill()
	if got := recv(t, "reco", reco); got != b.addr() {
		t.Fatalf("after a: %s, want b %s", got, b.addr())
	}
	a.start()
	b.kill()
	if got := recv(t, "reco", reco); got != a.addr() {
		t.Fatalf("after b: %s, want a %s (the dead address skipped)", got, a.addr())
	}
}

// A stream that is not resubscribable fails with the transport error when
// its connection does; Close ends a wait for a connection and a Recv.
func TestReconnectPlainStreamAndClose(t *testing.T) {
	h := newRCHandlers(true)
	n := newRestartNode(t, service(t, auth.LoginLimit{}, users...), func(srv *server.Server) { h.register(t, srv) })
	r := startReconnecting(t, []string{n.addr()})
	ctx := context.Background()
	plain, err := rcPlain.Open(ctx, r, &u64{})
	if err != nil {
		t.Fatal(err)
	}
	resub, err := rcTicks.Open(ctx, r, &u64{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*hawser.StreamReader[*u64]{plain, resub} {
		if it, err := s.Recv(); err != nil || it.V != 0 {
			t.Fatalf("first item %v, %v", it, err)
		}
	}
	n.kill()
	for {
		_, err := plain.Recv()
		if err == nil {
			continue // items sent before the kill
		}
		if !errors.Is(err, hawser.ErrTransport) || errors.Is(err, hawser.ErrResubscribed) {
			t.Fatalf("plain stream: %v", err)
		}
		break
	}
	_ = plain.Close()
	recvd := make(chan error, 1)
	go func() {
		for {
			if _, err := resub.Recv(); err != nil {
				recvd <- err
				return
			}
		}
	}()
	call := make(chan error, 1)
	go func() { _, err := rcGet.Call(ctx, r, &u64{1}); call <- err }()
	waitFor(t, "the client to see the loss", func() bool { return r.Addr() == "" })
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, "call", call); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("a call waiting at Close: %v", err)
	}
	if err := recv(t, "the Recv", recvd); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("a Recv waiting at Close: %v", err)
	}
	recv(t, "r.Done()", r.Done())
	if !errors.Is(r.Err(), client.ErrClosed) {
		t.Fatalf("Err %v", r.Err())
	}
}

// A graceful shutdown while only a resubscribable stream is open (no call
// to fail with ErrGoAway): the client sees the GOAWAY, moves the stream
// off the draining connection at once, so the drain ends without waiting
// for the shutdown's deadline, and the stream goes on after the restart.
func TestReconnectShutdownMovesStream(t *testing.T) {
	h := newRCHandlers(true)
	n := newRestartNode(t, service(t, auth.LoginLimit{}, users...), func(srv *server.Server) { h.register(t, srv) })
	r := startReconnecting(t, []string{n.addr()})
	s, err := rcTicks.Open(context.Background(), r, &u64{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if it, err := s.Recv(); err != nil || it.V != 0 {
		t.Fatalf("%v, %v", it, err)
	}
	start := time.Now()
	if err := n.shutdown(5 * time.Second); err != nil {
		t.Fatalf("Shutdown did not drain: %v", err)
	}
	t.Logf("drained in %v", time.Since(start))
	n.start()
	for {
		_, err := s.Recv()
		if errors.Is(err, hawser.ErrResubscribed) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if it, err := s.Recv(); err != nil || it.V != 0 {
		t.Fatalf("the first item after the marker: %v, %v", it, err)
	}
}

// The request-ID table is per user: one ID used by two users is two
// calls; each user's repeat gets that user's outcome.
func TestRequestIDPerUser(t *testing.T) {
	h := newRCHandlers(true)
	n := newRestartNode(t, service(t, auth.LoginLimit{}, users...), func(srv *server.Server) { h.register(t, srv) })
	id := hawser.NewRequestID()
	for _, u := range [][2]string{{"admin", "a"}, {"flows", "f"}, {"admin", "a"}, {"flows", "f"}} {
		c, err := client.Start(context.Background(), n.addr(), u[0], u[1], client.WithPinnedCertificate(testCert(t).CertPEM))
		if err != nil {
			t.Fatal(err)
		}
		out, err := rcFlow.Start(context.Background(), c, &u64{2}, hawser.WithRequestID(id))
		_ = c.Close()
		if err != nil || out.V != 3 {
			t.Fatalf("%s: %v, %v", u[0], out, err)
		}
	}
	if runs := h.ran("rc.transfer", 2); runs != 2 {
		t.Fatalf("the flow ran %d times, want once per user", runs)
	}
	if st := n.server().DedupStats(); st.Hits != 2 || st.Entries != 2 {
		t.Fatalf("stats %+v", st)
	}
}
