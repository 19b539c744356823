package conn

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
)

// Regression tests for the core-hardening issue (#7): each names the item
// it covers and failed before its fix.

// sizedRoute replies with as many bytes as the request's first 4 bytes say,
// in a pattern the caller checks, after release is closed (if not nil).
func sizedRoute(started chan<- struct{}, release <-chan struct{}) *Route {
	return &Route{Unary: func(ctx context.Context, req *Request) ([]byte, error) {
		n := binary.BigEndian.Uint32(req.Payload)
		if started != nil {
			started <- struct{}{}
		}
		if release != nil {
			<-release
		}
		return pattern(int(n)), nil
	}}
}

func pattern(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(i*7 + i>>9)
	}
	return out
}

func sizeReq(n int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(n)) }

// Item 2: replies of 512 KiB and more that are still queued when the last
// call leaves reach the caller whole: drained means written to the socket,
// and the close after it discards nothing.
func TestShutdownDeliversLargeReplies(t *testing.T) {
	r := newTestRouter()
	started := make(chan struct{}, 8)
	release := make(chan struct{})
	big := r.handle("big", sizedRoute(started, release))
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	sizes := []int{512 << 10, 1 << 20, 3 << 20, 8 << 20}
	errs := make(chan error, len(sizes))
	for _, n := range sizes {
		go func() {
			resp, err := c.Call(context.Background(), big, sizeReq(n))
			if err == nil && !bytes.Equal(resp, pattern(n)) {
				err = errors.New("reply corrupted or truncated")
			}
			errs <- err
		}()
	}
	for range sizes {
		<-started
	}
	sc := <-srv.accept
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- sc.Shutdown(ctx) }()
	eventually(t, "the client draining", c.Draining)
	close(release)
	for range sizes {
		if err := <-errs; err != nil {
			t.Fatalf("reply at shutdown: %v", err)
		}
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Item 3: a dialer's own Shutdown runs the calls it had started: its
// GOAWAY must not make the acceptor refuse CALLs queued before it.
func TestDialerShutdownRunsStartedCalls(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModePool))
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	const n = 24
	payload := pattern(256 << 10) // 6 MiB in all: most of it waits in the bulk queue
	errs := make(chan error, n)
	var returned atomic.Int32
	for range n {
		go func() {
			resp, err := c.Call(context.Background(), echo, payload)
			if err == nil && !bytes.Equal(resp, payload) {
				err = errors.New("wrong echo")
			}
			returned.Add(1)
			errs <- err
		}()
	}
	// Every call registered (pending, or already answered: on a slow
	// machine the first ones complete before the last ones start).
	eventually(t, "every call started", func() bool { return c.InFlight()+int(returned.Load()) == n })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("a call started before the dialer's GOAWAY: %v", err)
		}
	}
}

// Item 5: a call admitted during a drain and then refused because the
// worker pool is full still lets the drain complete.
func TestRefusedAdmissionCompletesDrain(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModeInline))
	hold := make(chan struct{})
	block := r.handle("block", &Route{Unary: func(context.Context, *Request) ([]byte, error) {
		<-hold
		return nil, nil
	}})
	var sc *Conn
	var submits atomic.Int32
	r.submit = func(t Task) bool {
		if submits.Add(1) == 1 {
			return r.pool.Submit(t) // call 1: runs and blocks on hold
		}
		// Call 3, admitted during the drain: let call 1 finish first, so
		// that the refusal is what empties the connection.
		close(hold)
		for sc.InFlight() > 1 {
			runtime.Gosched()
		}
		return false
	}
	srv := startServer(t, r, nil)
	p := dialRaw(t, srv.addr())
	call := func(id uint32, m uint64) []byte {
		return codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindCall, ID: id}, Body: codec.AppendCallPrefix(nil, m, nil)})
	}
	p.write(t, append(call(5, echo), call(1, block)...))
	sc = <-srv.accept
	eventually(t, "call 1 in flight", func() bool { return sc.InFlight() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- sc.Shutdown(ctx) }()
	eventually(t, "the drain", sc.Draining)
	p.write(t, call(3, block)) // 3 <= the GOAWAY's Arg (5): admitted, then refused
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown after a refused admission: %v", err)
	}
}

// Item 5: the GOAWAY reaches the peer before any ERROR Unavailable that it
// causes.
func TestGoAwayBeforeUnavailable(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModeInline))
	srv := startServer(t, r, nil)
	for round := range 30 {
		p := dialRaw(t, srv.addr())
		sc := func() *Conn {
			p.write(t, codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindPing}}))
			return <-srv.accept
		}()
		stop := make(chan struct{})
		wrote := make(chan struct{})
		go func() { // urgent calls as fast as the peer can send them
			defer close(wrote)
			var batch []byte
			id := uint32(1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				batch = batch[:0]
				for range 64 {
					batch = codec.Append(batch, codec.Frame{Header: codec.Header{Kind: codec.KindCall, Flags: codec.FlagUrgent, ID: id}, Body: codec.AppendCallPrefix(nil, echo, nil)})
					id += 2
				}
				if _, err := p.h.rw.Write(batch); err != nil {
					return
				}
			}
		}()
		go func() { _ = sc.Shutdown(context.Background()) }()
		frames, _ := p.readFrames()
		close(stop)
		<-wrote
		sawGoAway := false
		for _, f := range frames {
			switch {
			case f.Kind == codec.KindGoAway:
				sawGoAway = true
			case f.Kind == codec.KindError && f.Code == codec.CodeUnavailable && !sawGoAway:
				t.Fatalf("round %d: ERROR Unavailable for call %d before the GOAWAY", round, f.ID)
			}
		}
		_ = p.nc.Close()
	}
}

// Item 8: a dialer that keeps to MaxCalls is never refused: the acceptor
// frees a call's slot before its reply can reach the dialer.
func TestAtMaxCallsNeverRefused(t *testing.T) {
	for _, mode := range []Mode{ModeInline, ModePool, ModeOrdered} {
		r := newTestRouter()
		echo := r.handle("echo", echoRoute(mode))
		srv := startServer(t, r, func(c *Config) { c.MaxCalls = 4 })
		c := dialTest(t, newClientEngine(t), srv.addr(), nil)
		var refused, calls atomic.Int32
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 250 {
					_, err := c.Call(context.Background(), echo, []byte("x"))
					calls.Add(1)
					if err != nil {
						refused.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if refused.Load() != 0 {
			t.Fatalf("mode %d: %d of %d calls refused at MaxCalls", mode, refused.Load(), calls.Load())
		}
	}
}

// Item 9: a GOAWAY with an error code means the peer is closing: the
// receiver closes the connection instead of keeping it with timers
// stopped.
func TestErrorGoAwayCloses(t *testing.T) {
	r := newTestRouter()
	srv := startServer(t, r, nil)
	p := dialRaw(t, srv.addr())
	body := codec.AppendErrorBody(nil, "", "going")
	p.write(t, codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindGoAway, Code: codec.CodeShutdown}, Body: body}))
	sc := <-srv.accept
	select {
	case <-sc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the connection stayed open after a GOAWAY with an error code")
	}
	var pe *PeerError
	if !errors.As(sc.Err(), &pe) || pe.Code != codec.CodeShutdown {
		t.Fatalf("closed with %v", sc.Err())
	}
}

// Item 9: OpenStream and the loop ending the stream at once do not race
// (the race detector reported the write of Stream.stop against end).
func TestStreamEndsWhileOpening(t *testing.T) {
	r := newTestRouter()
	m := r.handle("empty", &Route{Mode: ModeInline, Stream: func(context.Context, *Request, *ServerStream) error { return nil }})
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			streams := make([]hawser.RawStream, 0, 100)
			for range 100 {
				s, err := c.OpenStream(context.Background(), m, nil)
				if err != nil {
					t.Error(err)
					return
				}
				streams = append(streams, s)
			}
			for _, s := range streams {
				if _, err := s.Recv(); err == nil {
					t.Error("item from an empty stream")
				}
			}
		}()
	}
	wg.Wait()
}

// Item 9: a ServerStream kept by its handler after it returned refuses to
// send: it never writes frames, under its own ID or another call's.
func TestLateSendFails(t *testing.T) {
	r := newTestRouter()
	kept := make(chan *ServerStream, 1)
	leak := r.handle("leak", &Route{Stream: func(_ context.Context, _ *Request, s *ServerStream) error {
		kept <- s
		return nil
	}})
	hold := make(chan struct{})
	var holdOnce sync.Once
	release := func() { holdOnce.Do(func() { close(hold) }) }
	t.Cleanup(release)
	other := r.handle("other", &Route{Stream: func(ctx context.Context, _ *Request, s *ServerStream) error {
		select {
		case <-hold:
		case <-ctx.Done():
		}
		return s.Send([]byte("mine"))
	}})
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	s1, err := c.OpenStream(context.Background(), leak, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Recv(); err == nil {
		t.Fatal("item from the leaking stream")
	}
	stale := <-kept
	sc := <-srv.accept
	eventually(t, "the first stream gone", func() bool { return sc.InFlight() == 0 })
	s2, err := c.OpenStream(context.Background(), other, nil)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second stream at the server", func() bool { return sc.InFlight() == 1 })
	if err := stale.Send([]byte("stale")); err == nil {
		t.Error("Send after the handler returned succeeded")
	}
	release()
	item, err := s2.Recv()
	if err != nil || string(item) != "mine" {
		t.Fatalf("second stream got %q, %v", item, err)
	}
}

// Item 9: what partial messages hold is bounded by the capacity of their
// buffers, not only by the bytes received.
func TestReassemblyBoundedByCapacity(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModePool))
	const maxMsg = 1 << 20
	srv := startServer(t, r, func(c *Config) { c.MaxMessageSize = maxMsg })
	p := dialRaw(t, srv.addr())
	frag := make([]byte, 40<<10)
	var in []byte
	for id := uint32(1); id < 2*24; id += 2 { // 24 messages of 3 fragments: 2.8 MiB received
		in = codec.Append(in, codec.Frame{Header: codec.Header{Kind: codec.KindCall, Flags: codec.FlagMore, ID: id}, Body: append(codec.AppendCallPrefix(nil, echo, nil), frag...)})
		for range 2 {
			in = codec.Append(in, codec.Frame{Header: codec.Header{Kind: codec.KindContinuation, Flags: codec.FlagMore, ID: id}, Body: frag})
		}
	}
	in = codec.Append(in, codec.Frame{Header: codec.Header{Kind: codec.KindPing, Arg: 1}})
	p.write(t, in)
	sc := <-srv.accept
	type held struct{ counted, capacity, bound int }
	probe := func() held {
		got := make(chan held, 1)
		_ = sc.gc.Execute(context.Background(), runnableFunc(func() {
			h := held{counted: sc.asmBytes, bound: sc.maxReassembly()}
			for _, a := range sc.asm {
				h.capacity += cap(a.msg.payload)
			}
			got <- h
		}))
		return <-got
	}
	var h held
	eventually(t, "the fragments received", func() bool {
		h = probe()
		return h.counted >= 24*3*len(frag) || sc.Err() != nil
	})
	if h.capacity > h.counted || h.capacity > h.bound {
		t.Fatalf("partial messages hold %d bytes of buffers but count %d (bound %d)", h.capacity, h.counted, h.bound)
	}
}

type runnableFunc func()

func (f runnableFunc) Run(context.Context) error { f(); return nil }

// Item 7: a peer that stops reading its replies holds no worker of the
// shared pool: other connections keep being served.
func TestNonReaderHoldsNoWorkers(t *testing.T) {
	r := newTestRouter()
	r.pool.Close()
	r.pool = newSmallPool(8)
	big := r.handle("big", sizedRoute(nil, nil))
	echo := r.handle("echo", echoRoute(ModePool))
	// A share of the whole pool: without parking, the non-reader's replies
	// would hold every worker.
	srv := startServer(t, r, func(c *Config) { c.PoolShare = 8 })
	p := dialRaw(t, srv.addr())
	var in []byte
	for id := uint32(1); id < 2*64; id += 2 { // 64 calls of 256 KiB replies, never read
		in = codec.Append(in, codec.Frame{Header: codec.Header{Kind: codec.KindCall, ID: id}, Body: append(codec.AppendCallPrefix(nil, big, nil), sizeReq(256<<10)...)})
	}
	p.write(t, in)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	for i := range 200 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Call(ctx, echo, []byte("x"))
		cancel()
		if err != nil {
			t.Fatalf("call %d of a well-behaved client next to a non-reader: %v", i, err)
		}
	}
}

// Item 6: a peer that floods PINGs and refused CALLs and never reads
// costs a bounded amount of memory and is closed with GOAWAY SlowReader.
func TestFloodWithoutReadingBounded(t *testing.T) {
	r := newTestRouter()
	srv := startServer(t, r, func(c *Config) { c.MaxCalls = 1 })
	p := dialRaw(t, srv.addr())
	var batch []byte
	id := uint32(1)
	for range 256 {
		batch = codec.Append(batch, codec.Frame{Header: codec.Header{Kind: codec.KindPing, Arg: id}})
		batch = codec.Append(batch, codec.Frame{Header: codec.Header{Kind: codec.KindCall, ID: id}, Body: codec.AppendCallPrefix(nil, codec.MethodID("nope"), nil)})
		id += 2
	}
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := p.h.rw.Write(batch); err != nil {
				done <- err
				return
			}
		}
	}()
	sc := <-srv.accept
	select {
	case err := <-done:
		t.Logf("flooder stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the flooder was never closed")
	}
	<-sc.Done()
	if !errors.Is(sc.Err(), ErrSlowReader) {
		t.Fatalf("flooder closed with %v, want ErrSlowReader", sc.Err())
	}
}

// Item 6: a peer whose PINGs the loop answers faster than it reads them is
// paused, not dropped, below MaxInputBacklog: once it reads, the input
// that waited is handled, although nothing new arrives to announce it.
func TestPausedInputResumes(t *testing.T) {
	r := newTestRouter()
	srv := startServer(t, r, func(c *Config) {
		c.WriteHighWater = 256 << 10
		c.MaxInputBacklog = 8 << 20
	})
	// Little room for PONGs in the kernel, set before connect (a receive
	// buffer shrunk below loopback's 64 KiB MSS afterwards stalls TCP on
	// zero-window probes).
	d := net.Dialer{Control: (&Config{SocketBuffer: 64 << 10}).socketControl}
	nc, err := d.Dial("tcp", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rw, err := DialRaw(context.Background(), nc, clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	const pings = 1 << 18 // 4 MiB of PINGs, then a marker
	var in []byte
	for i := range pings {
		in = codec.Append(in, codec.Frame{Header: codec.Header{Kind: codec.KindPing, Arg: uint32(i)}})
	}
	in = codec.Append(in, codec.Frame{Header: codec.Header{Kind: codec.KindPing, Arg: 0xFFFFFFFF}})
	if _, err := rw.Write(in); err != nil {
		t.Fatal(err)
	}
	sc := <-srv.accept
	paused := func() bool {
		got := make(chan bool, 1)
		_ = sc.gc.Execute(context.Background(), runnableFunc(func() { got <- sc.paused }))
		return <-got
	}
	eventually(t, "input paused", paused)
	// Wait until every byte sent is in gnet's buffer (none in either
	// kernel), so that no socket event will come after the pause lifts.
	eventually(t, "the input received", func() bool {
		if sockQueue(t, nc, syscall.TIOCOUTQ) != 0 {
			return false
		}
		got := make(chan int, 1)
		_ = sc.gc.Execute(context.Background(), runnableFunc(func() { got <- fdQueue(sc.gc.Fd(), syscall.TIOCINQ) }))
		return <-got == 0
	})
	_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 64<<10)
	var pending []byte
	pongs := 0
	for {
		n, err := rw.Read(buf)
		if err != nil {
			t.Fatalf("after %d PONGs: %v", pongs, err)
		}
		pending = append(pending, buf[:n]...)
		for {
			f, k, err := codec.Parse(pending, codec.DefaultMaxFrameSize)
			if err != nil {
				break
			}
			pending = pending[k:]
			if f.Kind != codec.KindPong {
				t.Fatalf("got %v", f.Kind)
			}
			pongs++
			if f.Arg == 0xFFFFFFFF {
				if pongs != pings+1 {
					t.Fatalf("%d PONGs for %d PINGs", pongs, pings+1)
				}
				return
			}
		}
	}
}

// sockQueue is a socket's unsent (TIOCOUTQ) or unread (TIOCINQ) bytes.
func sockQueue(t *testing.T, nc net.Conn, req uint) int {
	raw, err := nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = raw.Control(func(fd uintptr) { n = fdQueue(int(fd), req) })
	return n
}

func fdQueue(fd int, req uint) int {
	var n int32
	_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&n)))
	return int(n)
}

// A dialer that keeps to MaxCalls and reads its replies is never closed as
// a slow reader, even when inline handlers answer it faster than it reads:
// their outcomes wait for room in the outbox, bounded by MaxCalls, instead
// of pausing its input until that passes MaxInputBacklog.
func TestInlineLargeRepliesNotSlowReader(t *testing.T) {
	r := newTestRouter()
	echo := r.handle("echo", echoRoute(ModeInline))
	srv := startServer(t, r, nil)
	c := dialTest(t, newClientEngine(t), srv.addr(), nil)
	payload := pattern(64 << 10)
	// 16 MiB of requests in flight: before, the server stopped reading at
	// twice the mark and closed the dialer past 2 MiB of input (without
	// the race detector, which slows the dialer too much to get there).
	const callers, each = 256, 8
	echoConcurrently(t, c, echo, payload, callers, each)
}
