package conn

import (
	"net"
	"sync"
	"time"
)

// transport is the net.Conn under a tls.Conn (DESIGN.md §4).
//
// During the handshake it passes reads and writes through to the dialed or
// accepted *net.TCPConn, which blocks: a TLS handshake cannot resume after a
// would-block error. Once the connection is enrolled on an event loop it
// switches to loop mode:
//   - Read, on the loop goroutine only, copies from the gnet.Conn's inbound
//     bytes and, when there are no more, returns errWouldBlock, a net.Error
//     that crypto/tls does not record, keeping a partial record buffered
//     for the next call;
//   - Write copies each record (crypto/tls reuses its buffer) into pooled
//     chunks and never fails: a write error would poison the tls.Conn. The
//     connection's writer (the loop's flush or a direct writer) takes the
//     chunks and writes them to the socket. Write runs under crypto/tls's
//     output lock, from the writer or from a Read on the loop that answers
//     a KeyUpdate, so out has its own mutex.
type transport struct {
	nc net.Conn // handshake mode; nil in loop mode

	// Loop mode.
	gc    sock       // loop only; a gnet.Conn is valid inside a gnet callback
	outMu sync.Mutex // guards out
	out   chunks     // ciphertext waiting for the writer
}

// pending reports whether ciphertext waits for the writer.
func (t *transport) pending() bool {
	t.outMu.Lock()
	defer t.outMu.Unlock()
	return t.out.size > 0
}

// take moves the ciphertext written so far to the end of dst.
func (t *transport) take(dst *chunks) {
	t.outMu.Lock()
	t.out.takeInto(dst, 1<<62)
	t.outMu.Unlock()
}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "conn: no more buffered input" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// errWouldBlock must stay a bare net.Error: crypto/tls type-asserts it.
var errWouldBlock net.Error = wouldBlock{}

func (t *transport) Read(p []byte) (int, error) {
	if t.nc != nil {
		return t.nc.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, _ := t.gc.Read(p)
	if n == 0 {
		return 0, errWouldBlock
	}
	return n, nil
}

func (t *transport) Write(p []byte) (int, error) {
	if t.nc != nil {
		return t.nc.Write(p)
	}
	t.outMu.Lock()
	t.out.write(p)
	t.out.endFrame()
	t.outMu.Unlock()
	return len(p), nil
}

func (t *transport) Close() error {
	if t.nc != nil {
		return t.nc.Close()
	}
	return nil
}

func (t *transport) LocalAddr() net.Addr {
	if t.nc != nil {
		return t.nc.LocalAddr()
	}
	return nil
}

func (t *transport) RemoteAddr() net.Addr {
	if t.nc != nil {
		return t.nc.RemoteAddr()
	}
	return nil
}

func (t *transport) SetDeadline(d time.Time) error {
	if t.nc != nil {
		return t.nc.SetDeadline(d)
	}
	return nil
}

func (t *transport) SetReadDeadline(d time.Time) error {
	if t.nc != nil {
		return t.nc.SetReadDeadline(d)
	}
	return nil
}

func (t *transport) SetWriteDeadline(d time.Time) error {
	if t.nc != nil {
		return t.nc.SetWriteDeadline(d)
	}
	return nil
}
