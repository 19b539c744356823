package conn

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// sock is the socket under a Conn as its loop code sees it. Its methods
// other than Execute and Close are called by the loop only (see Conn: the
// gnet loop goroutine, or whoever holds a pollSock's loop lock).
type sock interface {
	// Read copies inbound bytes; 0 means none are left now.
	Read(p []byte) (int, error)
	// Discard drops inbound bytes (-1: all).
	Discard(n int) (int, error)
	InboundBuffered() int
	// OutboundBuffered is what Writev accepted and the socket did not take.
	OutboundBuffered() int
	// Writev writes bs, buffering what the socket does not take; it never
	// blocks.
	Writev(bs [][]byte) (int, error)
	Fd() int
	// Execute runs r on the loop, from any goroutine.
	Execute(ctx context.Context, r gnet.Runnable) error
	// Close closes the connection after the current loop callback, from
	// any goroutine; onClose follows on the loop.
	Close() error
	// CloseLoop closes the connection from the loop: onClose runs before
	// it returns or (gnet) when the callback returns.
	CloseLoop() error
}

// gnetSock is a connection on a gnet event loop.
type gnetSock struct {
	gnet.Conn
	loop gnet.EventLoop
}

func (g *gnetSock) Execute(ctx context.Context, r gnet.Runnable) error {
	return g.loop.Execute(ctx, r)
}

func (g *gnetSock) CloseLoop() error { return g.loop.Close(g.Conn) }

// pollSock runs a dialed connection without an event loop: a goroutine
// parked in Go's network poller reads, and the Conn's loop code runs under
// mu, held by that reader while it handles input and by a task goroutine,
// started on demand, for Execute. A node dials few connections, and this
// way a reply wakes the goroutine that waits for it on the same thread,
// with no loop thread between (the event loop is for accepting many). What
// a write does not place in the socket at once is kept in out and written
// by a drain goroutine that waits for the socket to be writable, so the
// loop code never blocks on the peer.
type pollSock struct {
	c  *Conn
	nc *net.TCPConn
	rc syscall.RawConn
	fd int

	mu     sync.Mutex // the loop
	closed bool       // under mu: onClose ran
	in     []byte     // under mu: inbound bytes not consumed yet
	own    *[]byte    // under mu: storage for in when it outlives a read

	tmu     sync.Mutex
	tasks   []gnet.Runnable
	spare   []gnet.Runnable
	running bool // a task goroutine runs
	tdone   bool // closed: Execute fails

	omu      sync.Mutex
	out      chunks
	draining bool
	werr     error

	done chan struct{} // closed after onClose and the socket's close
}

// errSockClosed is returned by a closed pollSock.
var errSockClosed = errors.New("conn: connection closed")

func newPollSock(c *Conn, nc *net.TCPConn) (*pollSock, error) {
	rc, err := nc.SyscallConn()
	if err != nil {
		return nil, err
	}
	p := &pollSock{c: c, nc: nc, rc: rc, done: make(chan struct{})}
	if err := rc.Control(func(fd uintptr) { p.fd = int(fd) }); err != nil {
		return nil, err
	}
	return p, nil
}

// start runs the Conn's onOpen under the loop lock and then reads.
func (p *pollSock) start() {
	p.mu.Lock()
	if p.c.onOpenSock(p) == gnet.Close {
		p.closeLocked(nil)
	}
	p.mu.Unlock()
	go p.readLoop()
}

// readLoop reads into a pooled buffer taken only when bytes are there, so
// an idle connection holds none, and hands them to the Conn.
func (p *pollSock) readLoop() {
	for {
		var buf *[]byte
		var n int
		var rerr error
		err := p.rc.Read(func(fd uintptr) bool {
			buf = getReadBuf(chunkSize)
			for {
				n, rerr = rawRead(int(fd), *buf)
				if !errors.Is(rerr, unix.EINTR) {
					break
				}
			}
			if errors.Is(rerr, unix.EAGAIN) {
				putReadBuf(buf)
				buf = nil
				return false // wait until readable
			}
			return true
		})
		if err == nil && rerr != nil {
			err = rerr
		}
		if err == nil && n <= 0 {
			err = io.EOF
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			if buf != nil {
				putReadBuf(buf)
			}
			return
		}
		if err != nil {
			if buf != nil {
				putReadBuf(buf)
			}
			p.closeLocked(err)
			p.mu.Unlock()
			return
		}
		data := (*buf)[:n]
		if len(p.in) > 0 {
			// p.in is in p.own (see below): append after it.
			rest := p.in
			*p.own = append((*p.own)[:0], rest...)
			*p.own = append(*p.own, data...)
			p.in = *p.own
			putReadBuf(buf)
			buf = nil
		} else {
			p.in = data
		}
		act := p.c.onTraffic()
		if len(p.in) > 0 && buf != nil {
			// Input left unread (paused): keep it past this buffer.
			if p.own == nil {
				p.own = getBuf(len(p.in))
			}
			*p.own = append((*p.own)[:0], p.in...)
			p.in = *p.own
		}
		if buf != nil {
			putReadBuf(buf)
		}
		if len(p.in) == 0 && p.own != nil {
			putBuf(p.own)
			p.own = nil
		}
		if act == gnet.Close {
			p.closeLocked(nil)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// rawRead is a non-blocking read(2) the scheduler does not see (see
// writev): it never sleeps, and entering an ordinary system call from an
// idle process wakes the runtime's monitor thread, two futex calls and a
// thread switch per reply.
func rawRead(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}

func (p *pollSock) Read(b []byte) (int, error) {
	n := copy(b, p.in)
	p.in = p.in[n:]
	return n, nil
}

func (p *pollSock) Discard(n int) (int, error) {
	if n < 0 || n > len(p.in) {
		n = len(p.in)
	}
	p.in = p.in[n:]
	return n, nil
}

func (p *pollSock) InboundBuffered() int { return len(p.in) }

func (p *pollSock) OutboundBuffered() int {
	p.omu.Lock()
	defer p.omu.Unlock()
	return p.out.size
}

func (p *pollSock) Fd() int { return p.fd }

// Writev writes what the socket takes now and keeps the rest for the
// drain goroutine; after it, bytes only append.
func (p *pollSock) Writev(bs [][]byte) (int, error) {
	p.omu.Lock()
	defer p.omu.Unlock()
	if p.werr != nil {
		return 0, p.werr
	}
	total := 0
	for _, b := range bs {
		total += len(b)
	}
	written := 0
	if p.out.size == 0 {
		for {
			n, err := unix.Writev(p.fd, bs)
			if err == unix.EINTR {
				continue
			}
			if n > 0 {
				written = n
			}
			if err != nil && err != unix.EAGAIN {
				p.failLocked(err)
				return 0, err
			}
			break
		}
	}
	skip := written
	for _, b := range bs {
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		p.out.write(b[skip:])
		skip = 0
	}
	p.out.endFrame()
	if p.out.size > 0 && !p.draining {
		p.draining = true
		go p.drain()
	}
	return total, nil
}

// failLocked records a socket write error (p.omu held) and closes.
func (p *pollSock) failLocked(err error) {
	if p.werr == nil {
		p.werr = err
	}
	go func() { _ = p.Close() }()
}

// drain writes out, waiting in the poller for the socket to be writable.
func (p *pollSock) drain() {
	var iov [][]byte
	for {
		p.omu.Lock()
		if p.out.size == 0 || p.werr != nil {
			p.draining = false
			p.out.release()
			p.omu.Unlock()
			return
		}
		iov = iov[:0]
		for _, b := range p.out.bufs {
			iov = append(iov, *b)
		}
		p.omu.Unlock()
		var n int
		var werr error
		err := p.rc.Write(func(fd uintptr) bool {
			n, werr = unix.Writev(int(fd), iov)
			return werr != unix.EAGAIN && werr != unix.EINTR
		})
		clear(iov)
		if err == nil {
			err = werr
		}
		p.omu.Lock()
		if n > 0 {
			p.out.discard(n)
		}
		if err != nil {
			p.failLocked(err)
		}
		p.omu.Unlock()
	}
}

func (p *pollSock) Execute(_ context.Context, r gnet.Runnable) error {
	p.tmu.Lock()
	if p.tdone {
		p.tmu.Unlock()
		return errSockClosed
	}
	p.tasks = append(p.tasks, r)
	start := !p.running
	p.running = true
	p.tmu.Unlock()
	if start {
		go p.runTasks()
	}
	return nil
}

// runTasks runs queued tasks under the loop lock until none is left. It
// first lets the goroutines that are ready run: callers woken by a batch of
// replies queue their next calls, and one flush then writes them together
// (what the event loop's wake-up latency gives it for free).
func (p *pollSock) runTasks() {
	runtime.Gosched()
	for {
		p.tmu.Lock()
		ts := p.tasks
		if len(ts) == 0 {
			p.running = false
			p.tmu.Unlock()
			return
		}
		p.tasks, p.spare = p.spare[:0], ts
		p.tmu.Unlock()
		p.mu.Lock()
		for i, t := range ts {
			_ = t.Run(context.Background())
			ts[i] = nil
		}
		p.mu.Unlock()
	}
}

type closeTask struct{ p *pollSock }

func (t closeTask) Run(context.Context) error { return t.p.CloseLoop() }

func (p *pollSock) Close() error {
	if err := p.Execute(context.Background(), closeTask{p}); err != nil {
		return nil // closed already
	}
	return nil
}

func (p *pollSock) CloseLoop() error {
	p.closeLocked(nil)
	return nil
}

// closeLocked closes with the loop lock held: onClose first (as gnet does,
// while the descriptor is still open: direct writers are waited for), a
// last non-blocking write of what is buffered, then the socket, which ends
// the reader and the drain goroutine.
func (p *pollSock) closeLocked(err error) {
	if p.closed {
		return
	}
	p.closed = true
	p.tmu.Lock()
	p.tdone = true
	p.tmu.Unlock()
	p.c.onClose(err)
	p.omu.Lock()
	if p.out.size > 0 && p.werr == nil && !p.draining {
		// (A drain goroutine may be writing these very bytes: then what it
		// has not written when the socket closes is lost, as in gnet.)
		iov := make([][]byte, 0, len(p.out.bufs))
		for _, b := range p.out.bufs {
			iov = append(iov, *b)
		}
		_, _ = unix.Writev(p.fd, iov)
	}
	if p.werr == nil {
		p.werr = errSockClosed
	}
	if !p.draining {
		p.out.release()
	}
	p.omu.Unlock()
	p.in = nil
	if p.own != nil {
		putBuf(p.own)
		p.own = nil
	}
	_ = p.nc.Close()
	if p.c.eng != nil {
		p.c.eng.forget(p)
	}
	close(p.done)
}
