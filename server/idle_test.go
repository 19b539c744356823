package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser/conn"
)

// What an idle connection costs the server (issue 8): a child process (this
// test binary) opens authenticated TLS connections and makes one call on
// each, then leaves them idle; the server's live heap is measured before and
// after. The child's own memory is not in the server's process.

// idleConnsEnv sets N for BenchmarkIdleConnMemory; the default is small so
// that make test (every benchmark once) stays quick. The real measurement:
//
//	HAWSER_IDLE_CONNS=19000 go test -run '^$' -bench IdleConnMemory -benchtime=1x ./server/
//
// With HAWSER_IDLE_PROFILE=heap.pprof it also writes where the memory is.
//
// N is limited by the file-descriptor limit (each side holds one descriptor
// per connection; the benchmark raises RLIMIT_NOFILE as far as it may) and
// by the ephemeral ports toward one address (net.ipv4.ip_local_port_range,
// 28,232 by default).
const (
	idleConnsEnv     = "HAWSER_IDLE_CONNS"
	idleProfileEnv   = "HAWSER_IDLE_PROFILE"            // a path: write the server's heap profile there while idle
	idleDialerEnv    = "HAWSER_SERVER_TEST_IDLE_DIALER" // the child: opens idle connections on command
	defaultIdleConns = 200
	idlePayloadEnv   = "HAWSER_IDLE_PAYLOAD" // bytes of each connection's one call, each way; default 1 KiB
)

// BenchmarkIdleConnMemory reports the server's live heap per idle
// connection (bytes/conn, after GC: runtime.MemStats.HeapAlloc), its heap
// spans in use per connection (heap-inuse-B/conn, which adds size-class
// rounding and fragmentation) and its goroutines per connection.
func BenchmarkIdleConnMemory(b *testing.B) {
	n := defaultIdleConns
	if v := os.Getenv(idleConnsEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("%s=%q", idleConnsEnv, v)
		}
	}
	limit := raiseFDLimit(uint64(n) + 256)
	if max := int(limit) - 256; n > max {
		b.Logf("RLIMIT_NOFILE is %d: measuring %d connections instead of %d", limit, max, n)
		n = max
	}
	profile := os.Getenv(idleProfileEnv)
	if profile != "" {
		runtime.MemProfileRate = 1
	}
	s, _ := newServer(b, nil)
	must(b, Handle(s, Echo, func(_ context.Context, p []byte) ([]byte, error) { return p, nil }))
	addr := serve(b, s)
	var live, inuse, gor float64
	for range b.N {
		m := measureIdle(b, s, addr, n, profile)
		live += m.live
		inuse += m.inuse
		gor += m.goroutines
	}
	b.ReportMetric(live/float64(b.N), "bytes/conn")
	b.ReportMetric(inuse/float64(b.N), "heap-inuse-B/conn")
	b.ReportMetric(gor/float64(b.N), "goroutines/conn")
	b.Logf("N=%d idle connections, RLIMIT_NOFILE %d", n, limit)
}

type idleCost struct{ live, inuse, goroutines float64 }

// measureIdle has a child open one connection (warming up what a process
// allocates once), takes the baseline, has it open n more, and returns the
// server's cost per connection once all are enrolled and idle.
func measureIdle(b *testing.B, s *Server, addr string, n int, profile string) idleCost {
	d := startIdleDialer(b, addr)
	defer d.close()
	d.open(b, s, 1)
	base := serverHeap()
	baseG := runtime.NumGoroutine()
	d.open(b, s, n)
	// A connection releases its buffers once it has been quiet for a whole
	// tick interval (conn/idle.go): within two of them.
	time.Sleep(2*idleTick + time.Second)
	after := serverHeap()
	g := runtime.NumGoroutine()
	if profile != "" {
		writeHeapProfile(b, profile)
	}
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	return idleCost{
		live:       per(after.HeapAlloc, base.HeapAlloc),
		inuse:      per(after.HeapInuse, base.HeapInuse),
		goroutines: float64(g-baseG) / float64(n),
	}
}

// idleTick is how often a connection with the default configuration
// checks its timers (conn's tickInterval): WriteStallTimeout/4.
const idleTick = min(conn.DefaultKeepaliveInterval/2, conn.DefaultInactivityTimeout/4, conn.DefaultWriteStallTimeout/4)

// writeHeapProfile writes the server's heap profile (every allocation
// sampled) while the connections are idle: go tool pprof -sample_index=inuse_space.
func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// serverHeap collects garbage until sync.Pool's victim caches are empty too
// (a pool is cleared over two cycles), then reads the heap statistics.
func serverHeap() runtime.MemStats {
	for range 3 {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// raiseFDLimit raises RLIMIT_NOFILE to at least want if it can (root may
// raise the hard limit too, up to fs.nr_open) and returns the soft limit.
func raiseFDLimit(want uint64) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	if lim.Cur >= want {
		return lim.Cur
	}
	if raised := (syscall.Rlimit{Cur: want, Max: max(lim.Max, want)}); syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
		return want
	}
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

type idleDialer struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	total int
}

func startIdleDialer(b *testing.B, addr string) *idleDialer {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), idleDialerEnv+"="+addr)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return &idleDialer{cmd: cmd, in: in, out: bufio.NewReader(out)}
}

// open has the child open k more connections and waits until the server
// holds all of them, idle, with their handshake goroutines gone.
func (d *idleDialer) open(b *testing.B, s *Server, k int) {
	b.Helper()
	if _, err := fmt.Fprintf(d.in, "open %d\n", k); err != nil {
		b.Fatal(err)
	}
	line, err := d.out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "opened ") {
		b.Fatalf("idle dialer: %q %v", line, err)
	}
	d.total += k
	deadline := time.Now().Add(time.Minute)
	for !s.idleConns(d.total) {
		if time.Now().After(deadline) {
			b.Fatalf("the server does not hold %d idle connections (it has %d)", d.total, s.Conns())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// close ends the child, which closes its connections, and waits until the
// server has forgotten them.
func (d *idleDialer) close() {
	_ = d.in.Close()
	_ = d.cmd.Wait()
}

// idleConns reports whether the server holds n connections with nothing in
// flight and no handshake running.
func (s *Server) idleConns(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) != n {
		return false
	}
	for c := range s.conns {
		if c.InFlight() != 0 {
			return false
		}
	}
	s.adm.mu.Lock()
	defer s.adm.mu.Unlock()
	return s.adm.total == 0
}

// runIdleDialer is the child of BenchmarkIdleConnMemory: on "open K" from
// stdin it opens K authenticated connections to addr and makes one call
// on each, then answers "opened TOTAL"; when stdin closes it closes them.
func runIdleDialer(addr string) {
	raiseFDLimit(1 << 20)
	eng, err := conn.NewEngine(conn.EngineConfig{})
	if err != nil {
		fmt.Println("failed", err)
		return
	}
	defer eng.Close()
	var conns []*conn.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	size := 1 << 10
	if v, err := strconv.Atoi(os.Getenv(idlePayloadEnv)); err == nil && v >= 0 {
		size = v
	}
	payload := make([]byte, size)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var k int
		if _, err := fmt.Sscanf(in.Text(), "open %d", &k); err != nil {
			fmt.Println("failed", err)
			return
		}
		opened, err := openIdle(addr, len(conns), k, eng, payload)
		conns = append(conns, opened...)
		if err != nil {
			fmt.Println("failed", err)
			return
		}
		fmt.Println("opened", len(conns))
	}
}

// openIdle dials k connections, 16 at a time.
func openIdle(addr string, from, k int, eng *conn.Engine, payload []byte) ([]*conn.Conn, error) {
	out := make([]*conn.Conn, k)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= k {
					return
				}
				c, err := dialIdle(addr, from+i, eng, payload)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				out[i] = c
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	kept := out[:0]
	for _, c := range out {
		if c != nil {
			kept = append(kept, c)
		}
	}
	return kept, first
}

func dialIdle(addr string, i int, eng *conn.Engine, payload []byte) (*conn.Conn, error) {
	var err error
	for try := 0; try < 5; try++ {
		var c *conn.Conn
		c, err = conn.Dial(context.Background(), eng, addr, &conn.Config{
			TLS: conn.ClientTLS("", nil), ClusterKey: key, Timeout: 10 * time.Second,
		})
		if err != nil {
			continue
		}
		if _, err = Echo.Call(context.Background(), c, payload); err != nil {
			_ = c.Close()
			continue
		}
		return c, nil
	}
	return nil, fmt.Errorf("connection %d: %w", i, err)
}
