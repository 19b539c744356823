package gossipbench

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// Wire bytes are what a deployment pays on the network: every UDP datagram
// and every byte of every TCP connection, TLS handshakes and records,
// hawser's prefaces, PINGs and GOAWAYs included (TCP/IP headers are not).
//
// Datagrams are counted where both implementations hand them to the
// socket (faults.sentPacket). TCP is counted by a relay in front of each
// node's listener: every stream dial of either implementation goes to the
// target's relay, which forwards the bytes both ways and counts them. A
// relay is needed because hawser's connections leave Go's net package for
// gnet's event loops after their handshake (gnet dups the descriptor), so
// no net.Conn wrapper sees their traffic; the relay sees the same bytes for
// both implementations, by the same code.

// relay forwards the TCP connections made to its listener to target and
// counts the bytes that cross it, both ways, into n; conns counts the
// connections it accepted.
type relay struct {
	ln     net.Listener
	target string
	n      *atomic.Int64
	conns  *atomic.Int64

	mu     sync.Mutex
	open   map[net.Conn]struct{} // both sides of every piped connection
	closed bool
	wg     sync.WaitGroup // the accept loop and the pipes
}

func newRelay(target string, n, conns *atomic.Int64) (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, target: target, n: n, conns: conns, open: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		r.conns.Add(1)
		if !r.track(c) {
			_ = c.Close()
			return
		}
		r.wg.Add(1)
		go r.pipe(c)
	}
}

// track adds c to the open connections, unless the relay is closed.
func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.open[c] = struct{}{}
	return true
}

func (r *relay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		delete(r.open, c)
	}
}

// pipe connects c to the target and copies both ways. A FIN from one side
// is passed on as a FIN (CloseWrite), so graceful closes stay graceful; the
// pipe ends when both directions have.
func (r *relay) pipe(c net.Conn) {
	defer r.wg.Done()
	defer r.untrack(c)
	defer c.Close()
	b, err := net.Dial("tcp", r.target)
	if err != nil {
		return // c closes: the dialer sees the connection fail
	}
	defer b.Close()
	if !r.track(b) {
		return
	}
	defer r.untrack(b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.copy(b, c)
	}()
	r.copy(c, b)
	<-done
}

// copy copies src to dst, counting, then closes dst's write side (or all of
// dst, and src, after an error: a reset stays a reset).
func (r *relay) copy(dst, src net.Conn) {
	_, err := io.Copy(countWriter{dst, r.n}, src)
	if err != nil {
		_ = dst.Close()
		_ = src.Close()
		return
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// stop closes the listener: from then on dials are refused, as they are
// by a node that is gone. Piped connections go on until their ends close.
func (r *relay) stop() { _ = r.ln.Close() }

// close stops the relay, closes every piped connection and waits for the
// pipes.
func (r *relay) close() {
	r.stop()
	r.mu.Lock()
	r.closed = true
	for c := range r.open {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// relays maps each node's address to its relay, for the dialers of every
// node of a run.
type relays struct {
	mu sync.Mutex
	m  map[string]*relay // node address -> its relay
}

func (rs *relays) add(addr string, r *relay) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m == nil {
		rs.m = map[string]*relay{}
	}
	rs.m[addr] = r
}

// route is where a dial to addr goes: its node's relay, or addr itself for
// an address that is no node's (dialing it fails as it would).
func (rs *relays) route(addr string) string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r := rs.m[addr]; r != nil {
		return r.addr()
	}
	return addr
}

// closeAll closes every relay.
func (rs *relays) closeAll() {
	rs.mu.Lock()
	all := rs.m
	rs.m = nil
	rs.mu.Unlock()
	for _, r := range all {
		r.close()
	}
}
