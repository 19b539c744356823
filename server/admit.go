package server

import (
	"container/list"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// Admission: what a connection may cost between accept and the end of its
// handshake, so that connections that stay silent (or stall) cannot lock
// legitimate peers out (README, configuration).
//
//   - A new connection first waits, without a handshake slot, for its first
//     byte (the TLS ClientHello), at most FirstByteTimeout. It costs a
//     goroutine and a socket while it waits.
//   - At most MaxPendingConns connections are admitted and not yet
//     authenticated. When that is full, the oldest connection that has not
//     sent a byte is closed to make room; if every one has spoken, the new
//     connection is closed. Each source address may have at most
//     MaxSilentPerSource silent connections: past that its oldest silent one
//     is closed. A peer that dials and speaks at once is thus never behind a
//     silent one.
//   - A connection that has spoken then waits, up to Timeout, for a
//     handshake slot: at most MaxHandshakes run TLS and authentication at
//     once, at most MaxHandshakesPerSource of them from one source address.
//     Waiting connections are queued, not closed.
//   - The handshake itself is bounded by Timeout (rpc-timeout).
type admission struct {
	cfg   admissionConfig
	slots chan struct{} // handshake slots, MaxHandshakes
	done  chan struct{} // closed by closeAll

	mu      sync.Mutex
	closed  bool
	total   int                   // admitted and not yet handed over or dropped
	silent  list.List             // of *pending that have not spoken, oldest first
	sources map[string]*source    // by source address
	all     map[*pending]struct{} // every admitted connection, for closeAll
}

type admissionConfig struct {
	maxPending      int
	silentPerSource int
	handshakes      int
	perSourceHS     int
	slotTimeout     time.Duration
}

// source is what one remote address holds; guarded by admission.mu. It
// lives while any of its connections is admitted.
type source struct {
	n      int           // admitted and not yet dropped
	silent list.List     // of *pending from this source that have not spoken
	hs     int           // handshake slots held
	wake   chan struct{} // closed when a slot of this source frees
}

// pending is one admitted connection.
type pending struct {
	nc  net.Conn
	src string
	// Guarded by admission.mu.
	inSilent, inSource *list.Element // while silent
	dropped            bool          // counted out (closed, evicted or done)
	slot               bool          // holds a per-source handshake slot
}

var (
	errAdmissionClosed = errors.New("server: closed")
	errEvicted         = errors.New("server: silent connection closed to admit another")
	errSlotTimeout     = errors.New("server: no handshake slot within rpc-timeout")
)

func newAdmission(cfg admissionConfig) *admission {
	return &admission{
		cfg:     cfg,
		slots:   make(chan struct{}, cfg.handshakes),
		done:    make(chan struct{}),
		sources: map[string]*source{},
		all:     map[*pending]struct{}{},
	}
}

func sourceOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// admit registers nc, evicting silent connections as the bounds require.
// It returns nil, and has closed nc, when nc cannot be admitted.
func (a *admission) admit(nc net.Conn) *pending {
	p := &pending{nc: nc, src: sourceOf(nc.RemoteAddr())}
	var evict []*pending
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		_ = nc.Close()
		return nil
	}
	st := a.sources[p.src]
	if st == nil {
		st = &source{}
		a.sources[p.src] = st
	}
	st.n++ // p's, first: an eviction below must not free st under p
	if st.silent.Len() >= a.cfg.silentPerSource {
		evict = append(evict, a.dropLocked(st.silent.Front().Value.(*pending)))
	}
	if a.total >= a.cfg.maxPending {
		front := a.silent.Front()
		if front == nil {
			if st.n--; st.n == 0 {
				delete(a.sources, p.src)
			}
			a.mu.Unlock()
			closeAll(evict)
			_ = nc.Close()
			return nil
		}
		evict = append(evict, a.dropLocked(front.Value.(*pending)))
	}
	a.total++
	p.inSilent = a.silent.PushBack(p)
	p.inSource = st.silent.PushBack(p)
	a.all[p] = struct{}{}
	a.mu.Unlock()
	closeAll(evict) // their goroutines see the error and return
	return p
}

func closeAll(ps []*pending) {
	for _, p := range ps {
		_ = p.nc.Close()
	}
}

// dropLocked counts p out of every bound, once, and returns it.
func (a *admission) dropLocked(p *pending) *pending {
	if p.dropped {
		return p
	}
	p.dropped = true
	a.total--
	delete(a.all, p)
	st := a.sources[p.src]
	if p.inSilent != nil {
		a.silent.Remove(p.inSilent)
		st.silent.Remove(p.inSource)
		p.inSilent, p.inSource = nil, nil
	}
	if p.slot {
		p.slot = false
		st.hs--
		if st.wake != nil {
			close(st.wake)
			st.wake = nil
		}
	}
	if st.n--; st.n == 0 {
		delete(a.sources, p.src) // no connection of it left, so no waiter either
	}
	return p
}

// spoke moves p out of the silent set once its first byte arrived. It
// reports false if p was evicted meanwhile.
func (a *admission) spoke(p *pending) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p.dropped {
		return false
	}
	st := a.sources[p.src]
	a.silent.Remove(p.inSilent)
	st.silent.Remove(p.inSource)
	p.inSilent, p.inSource = nil, nil
	return true
}

// acquire waits for a handshake slot of p's source and a global one, up to
// slotTimeout. On success the caller runs the handshake and then calls
// finish.
func (a *admission) acquire(p *pending) error {
	timer := time.NewTimer(a.cfg.slotTimeout)
	defer timer.Stop()
	for {
		a.mu.Lock()
		if a.closed || p.dropped {
			a.mu.Unlock()
			return errAdmissionClosed
		}
		st := a.sources[p.src]
		if st.hs < a.cfg.perSourceHS {
			st.hs++
			p.slot = true
			a.mu.Unlock()
			break
		}
		if st.wake == nil {
			st.wake = make(chan struct{})
		}
		wake := st.wake
		a.mu.Unlock()
		select {
		case <-wake:
		case <-timer.C:
			return errSlotTimeout
		case <-a.done:
			return errAdmissionClosed
		}
	}
	select {
	case a.slots <- struct{}{}:
		return nil
	case <-timer.C:
		return errSlotTimeout
	case <-a.done:
		return errAdmissionClosed
	}
}

// finish counts p out; hadSlot says whether it held a global slot.
func (a *admission) finish(p *pending, hadSlot bool) {
	if hadSlot {
		<-a.slots
	}
	a.mu.Lock()
	a.dropLocked(p)
	a.mu.Unlock()
}

// closeAll stops admitting and closes every connection not yet handed over
// (silent, waiting for a slot, or in its handshake): their goroutines
// return promptly.
func (a *admission) closeAll() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	close(a.done)
	ncs := make([]net.Conn, 0, len(a.all))
	for p := range a.all {
		ncs = append(ncs, p.nc)
	}
	a.mu.Unlock()
	for _, nc := range ncs {
		_ = nc.Close()
	}
}

// waitFirstByte waits until nc has a byte to read (without reading it), the
// peer closes, or d passes.
func waitFirstByte(nc net.Conn, d time.Duration) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	if err := nc.SetReadDeadline(time.Now().Add(d)); err != nil {
		return err
	}
	var b [1]byte
	var got int
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		got, _, perr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return !errors.Is(perr, syscall.EAGAIN)
	})
	if err == nil {
		err = perr
	}
	if err == nil && got == 0 {
		err = errors.New("server: peer closed before its handshake")
	}
	if err != nil {
		return err
	}
	return nc.SetReadDeadline(time.Time{})
}
