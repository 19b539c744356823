package raft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/hawser-rpc/hawser/conn"
)

// Snapshots stream on the dedicated connection that carries the leader's
// appends (PROTOCOL.md, "InstallSnapshot"): Snapshot.Open hands the RPC to the
// follower's raft with a Reader and returns a session; Snapshot.Chunk
// calls carry the bytes in order, at most SnapshotWindow of them in flight;
// Snapshot.Done waits for raft's answer. The follower answers a chunk once
// its bytes fit in the session's buffer (SnapshotWindow), which raft's
// reads empty, so each side holds about one window whatever the size.

// Errors a snapshot's Reader returns to raft, and InstallSnapshot to its
// caller.
var (
	// ErrSnapshotTruncated: the stream ended (connection closed, leader
	// aborted or gave up, Done before Size bytes) before Size bytes came.
	ErrSnapshotTruncated = errors.New("raft: snapshot stream truncated")
	// ErrSnapshotStalled: no chunk came for Config.Timeout while raft
	// waited for one.
	ErrSnapshotStalled = errors.New("raft: snapshot stream stalled")
)

// maxSessions bounds the snapshots a transport receives at once (raft
// installs one at a time; a second leader may overlap briefly).
const maxSessions = 4

// session is a snapshot being received: raft's RPC.Reader.
type session struct {
	t      *Transport
	id     uint64
	c      *conn.Conn // its calls must come on this connection
	size   int64
	respCh chan hraft.RPCResponse

	dataCh   chan struct{} // signalled when bytes arrive (cap 1)
	advanced chan struct{} // guarded by mu: closed and renewed when recv grows
	roomCh   chan struct{} // signalled when raft has read (cap 1)
	dead     chan struct{} // closed by abort
	answered chan struct{} // closed when raft's response is in resp
	taken    chan struct{} // closed by Done once it has the response
	takeOnce sync.Once

	mu   sync.Mutex
	q    [][]byte // received, not yet read (kept request buffers)
	qLen int      // bytes in q
	recv int64    // bytes received (at most size)
	read int64    // bytes read by raft
	err  error    // why the stream failed; set once, with dead closed
	resp hraft.RPCResponse
	// timer is the Reader's wait for the next chunk; only Read uses it.
	timer *time.Timer
}

// Read yields exactly size bytes, then io.EOF; ErrSnapshotTruncated or
// ErrSnapshotStalled if the stream fails first. It implements io.Reader
// for raft.
func (s *session) Read(p []byte) (int, error) {
	for {
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return 0, err
		}
		if len(s.q) > 0 {
			n := copy(p, s.q[0])
			if s.q[0] = s.q[0][n:]; len(s.q[0]) == 0 {
				s.q[0] = nil
				s.q = s.q[1:]
			}
			s.qLen -= n
			s.read += int64(n)
			s.mu.Unlock()
			signal(s.roomCh)
			return n, nil
		}
		if s.read >= s.size {
			s.mu.Unlock()
			return 0, io.EOF
		}
		s.mu.Unlock()
		if len(p) == 0 {
			return 0, nil
		}
		if s.timer == nil {
			s.timer = time.NewTimer(s.t.cfg.Timeout)
		} else {
			s.timer.Reset(s.t.cfg.Timeout)
		}
		select {
		case <-s.dataCh:
		case <-s.dead:
		case <-s.timer.C:
			s.abort(fmt.Errorf("%w: no chunk for %v after %d of %d bytes", ErrSnapshotStalled, s.t.cfg.Timeout, s.read, s.size))
		}
		s.timer.Stop()
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// abort fails the stream (the first reason wins).
func (s *session) abort(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
		s.q, s.qLen = nil, 0
		close(s.dead)
	}
	s.mu.Unlock()
}

// watch owns the session's end: it aborts the stream when the connection
// closes or the transport does, and stores raft's answer for Done. It
// forgets the session once Done has taken the answer, or the connection
// has closed, or Timeout has passed since the answer or since the stream
// failed (raft never had the RPC, or never answers).
func (s *session) watch() {
	defer s.t.wg.Done()
	defer s.t.forget(s)
	cdone, dead, respCh := s.c.Done(), s.dead, s.respCh
	var giveUp <-chan time.Time
	var tm *time.Timer
	defer func() {
		if tm != nil {
			tm.Stop()
		}
	}()
	arm := func() {
		if tm == nil {
			tm = time.NewTimer(s.t.cfg.Timeout)
			giveUp = tm.C
		}
	}
	for {
		select {
		case r := <-respCh:
			respCh = nil
			s.mu.Lock()
			s.resp = r
			s.mu.Unlock()
			close(s.answered)
			if r.Error != nil {
				s.abort(fmt.Errorf("%w: raft answered: %w", ErrSnapshotTruncated, r.Error))
			}
			arm()
		case <-s.taken:
			return
		case <-cdone:
			if respCh == nil {
				return // answered; nobody can ask for it now
			}
			cdone = nil
			s.abort(fmt.Errorf("%w: connection closed after %d of %d bytes", ErrSnapshotTruncated, s.received(), s.size))
		case <-dead:
			dead = nil
			arm()
		case <-giveUp:
			return
		case <-s.t.ctx.Done():
			s.abort(hraft.ErrTransportShutdown)
			return
		}
	}
}

func (s *session) received() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recv
}

func (t *Transport) forget(s *session) {
	t.mu.Lock()
	if t.sessions[s.id] == s {
		delete(t.sessions, s.id)
	}
	t.mu.Unlock()
}

// lookup returns the session id if it belongs to connection c.
func (t *Transport) lookup(id uint64, c *conn.Conn) (*session, error) {
	t.mu.Lock()
	s := t.sessions[id]
	t.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("no snapshot session %d", id)
	}
	if s.c != c {
		return nil, fmt.Errorf("snapshot session %d belongs to another connection", id)
	}
	return s, nil
}

func snapErr(req *conn.Request, err error) []byte {
	msg := err.Error()
	return appendError(req.ReplyBuffer(16+len(msg)), CodeSnapshot, msg)
}

// serveSnapOpen serves raft.Snapshot.Open: it hands the InstallSnapshot
// RPC to raft with the session as its Reader and returns the session's ID.
func (t *Transport) serveSnapOpen(ctx context.Context, req *conn.Request) ([]byte, error) {
	req.Keep()
	a := new(hraft.InstallSnapshotRequest)
	if err := decodeInstallSnapshotRequest(req.Payload, a); err != nil {
		return badRequest(req, err), nil
	}
	if t.isClosed() {
		return t.refuse(req), nil
	}
	s := &session{
		t: t, c: req.Conn(), size: a.Size,
		respCh:   make(chan hraft.RPCResponse, 1),
		dataCh:   make(chan struct{}, 1),
		advanced: make(chan struct{}),
		roomCh:   make(chan struct{}, 1),
		dead:     make(chan struct{}),
		answered: make(chan struct{}),
		taken:    make(chan struct{}),
	}
	t.mu.Lock()
	if t.draining {
		t.mu.Unlock()
		return t.refuse(req), nil
	}
	if len(t.sessions) >= maxSessions {
		t.mu.Unlock()
		return snapErr(req, fmt.Errorf("%d snapshots already in progress", maxSessions)), nil
	}
	t.nextSess++
	s.id = t.nextSess
	t.sessions[s.id] = s
	t.wg.Add(1) // under mu, before Close sets draining and waits
	t.mu.Unlock()
	go s.watch()

	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	if code, msg := t.handOff(ctx, hraft.RPC{Command: a, Reader: s, RespChan: s.respCh}, nil); code != 0 {
		s.abort(fmt.Errorf("%w: not handed to raft: %s", ErrSnapshotTruncated, msg))
		return appendError(req.ReplyBuffer(16+len(msg)), code, msg), nil
	}
	t.stats.snapshots.Add(1)
	return appendSnapSession(appendOK(req.ReplyBuffer(16)), s.id), nil
}

// serveSnapChunk serves raft.Snapshot.Chunk: it queues the chunk's bytes
// for raft's reads once they fit in the window (bytes beyond Size are
// discarded and reported) and answers.
func (t *Transport) serveSnapChunk(ctx context.Context, req *conn.Request) ([]byte, error) {
	if t.isClosed() {
		return t.refuse(req), nil
	}
	var ch snapChunk
	if err := decodeSnapChunk(req.Payload, &ch); err != nil {
		return badRequest(req, err), nil
	}
	s, err := t.lookup(ch.Session, req.Conn())
	if err != nil {
		return snapErr(req, err), nil
	}
	s.mu.Lock()
	// Chunks run on the worker pool (so an append that raft cannot take
	// while it installs, ordered on the same connection, never holds them
	// back): a chunk that overtook its predecessor waits for it.
	for s.err == nil && ch.Offset > uint64(s.recv) && ch.Offset <= uint64(s.size) {
		adv := s.advanced
		s.mu.Unlock()
		select {
		case <-adv:
		case <-s.dead:
		case <-ctx.Done():
			return appendError(req.ReplyBuffer(64), CodeTimeout, "the snapshot's earlier chunks did not come in time"), nil
		}
		s.mu.Lock()
	}
	if s.err == nil && ch.Offset != uint64(s.recv) {
		s.mu.Unlock()
		s.abort(fmt.Errorf("%w: chunk at offset %d, expected %d", ErrSnapshotTruncated, ch.Offset, s.recv))
		s.mu.Lock()
	}
	data := ch.Data
	excess := 0
	if left := s.size - s.recv; int64(len(data)) > left {
		excess = len(data) - int(left)
		data = data[:left]
	}
	window := t.cfg.SnapshotWindow
	for s.err == nil && s.qLen > 0 && s.qLen+len(data) > window {
		s.mu.Unlock()
		select {
		case <-s.roomCh:
		case <-s.dead:
		case <-ctx.Done():
			return appendError(req.ReplyBuffer(64), CodeTimeout, "raft did not read the snapshot in time"), nil
		}
		s.mu.Lock()
	}
	if err := s.err; err != nil {
		s.mu.Unlock()
		return snapErr(req, err), nil
	}
	if len(data) > 0 {
		req.Keep()
		s.q = append(s.q, data)
		s.qLen += len(data)
		s.recv += int64(len(data))
		close(s.advanced)
		s.advanced = make(chan struct{})
	}
	s.mu.Unlock()
	signal(s.dataCh)
	if excess > 0 {
		t.stats.excess.Add(int64(excess))
		t.cfg.Logger.Warn("raft: snapshot chunk beyond its Size discarded",
			"peer", req.Conn().RemoteAddr(), "session", s.id, "size", s.size, "excess", excess)
		return snapErr(req, fmt.Errorf("%d bytes beyond the snapshot's size %d discarded", excess, s.size)), nil
	}
	return appendOK(req.ReplyBuffer(8)), nil
}

// serveSnapDone serves raft.Snapshot.Done: the leader has sent everything;
// it waits for raft's answer.
func (t *Transport) serveSnapDone(ctx context.Context, req *conn.Request) ([]byte, error) {
	if t.isClosed() {
		return t.refuse(req), nil
	}
	var d snapDone
	if err := decodeSnapDone(req.Payload, &d); err != nil {
		return badRequest(req, err), nil
	}
	s, err := t.lookup(d.Session, req.Conn())
	if err != nil {
		return snapErr(req, err), nil
	}
	if got := s.received(); got < s.size {
		s.abort(fmt.Errorf("%w: leader sent %d of %d bytes", ErrSnapshotTruncated, got, s.size))
	}
	ctx, cancel := context.WithTimeout(ctx, t.snapshotDoneTimeout(s.size))
	defer cancel()
	select {
	case <-s.answered:
	case <-ctx.Done():
		return appendError(req.ReplyBuffer(64), CodeTimeout, "raft did not answer the snapshot in time"), nil
	case <-t.ctx.Done():
		return t.refuse(req), nil
	}
	s.mu.Lock()
	r := s.resp
	s.mu.Unlock()
	s.takeOnce.Do(func() { close(s.taken) })
	return encodeResponse(req.ReplyBuffer(64), r), nil
}

// serveSnapAbort serves raft.Snapshot.Abort (on the pool, so it passes a
// chunk waiting for room): the leader gave up.
func (t *Transport) serveSnapAbort(_ context.Context, req *conn.Request) ([]byte, error) {
	id, err := decodeSnapSession(req.Payload)
	if err != nil {
		return badRequest(req, err), nil
	}
	s, err := t.lookup(id, req.Conn())
	if err != nil {
		return snapErr(req, err), nil
	}
	s.abort(fmt.Errorf("%w: the leader aborted after %d of %d bytes", ErrSnapshotTruncated, s.received(), s.size))
	return appendOK(req.ReplyBuffer(8)), nil
}

// InstallSnapshot streams a snapshot of args.Size bytes from data to the
// target on one of its connections and returns raft's answer. Exactly
// Size bytes are sent; a data that ends sooner fails the install (the
// follower's raft sees ErrSnapshotTruncated, never a short snapshot).
func (t *Transport) InstallSnapshot(id hraft.ServerID, target hraft.ServerAddress, args *hraft.InstallSnapshotRequest, resp *hraft.InstallSnapshotResponse, data io.Reader) error {
	if t.isClosed() {
		return hraft.ErrTransportShutdown
	}
	if args.Size < 0 {
		return fmt.Errorf("raft: InstallSnapshot to %s: negative size %d", target, args.Size)
	}
	dctx, cancel := context.WithTimeout(t.ctx, t.cfg.Timeout)
	c, err := t.bulkConnTo(dctx, t.peer(id, target))
	cancel()
	if err != nil {
		return t.callErr("InstallSnapshot", target, err)
	}
	body := appendInstallSnapshotRequest(nil, args)
	b, err := t.callOn(c, mSnapOpen, body, t.cfg.Timeout)
	if err != nil {
		return t.callErr("InstallSnapshot", target, err)
	}
	sess, err := decodeSnapSession(b)
	if err != nil {
		return fmt.Errorf("raft: InstallSnapshot to %s: %w", target, err)
	}
	if err := t.sendChunks(c, sess, args.Size, data); err != nil {
		t.abortSnapshot(c, sess)
		return t.callErr("InstallSnapshot", target, err)
	}
	b, err = t.callOn(c, mSnapDone, appendSnapDone(nil, &snapDone{Session: sess, Size: uint64(args.Size)}), t.snapshotDoneTimeout(args.Size))
	if err != nil {
		return t.callErr("InstallSnapshot", target, err)
	}
	return decodeInstallSnapshotResponse(b, resp)
}

// callOn makes one call on connection c and opens the reply envelope.
func (t *Transport) callOn(c *conn.Conn, method uint64, body []byte, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	resp, err := c.Call(ctx, method, body)
	if err != nil {
		return nil, err
	}
	return decodeReply(resp)
}

// abortSnapshot tells the follower, best effort, that the stream is over.
func (t *Transport) abortSnapshot(c *conn.Conn, sess uint64) {
	if t.isClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.HeartbeatTimeout)
	defer cancel()
	_, _ = c.Call(ctx, mSnapAbort, appendSnapSession(nil, sess), urgent...)
}

type chunkCall struct {
	f      *conn.Future
	cancel context.CancelFunc
}

// sendChunks sends size bytes of data as chunk calls on c, with at most
// SnapshotWindow bytes unanswered; each chunk has its own deadline
// (Timeout), so the transfer may take as long as it keeps moving.
func (t *Transport) sendChunks(c *conn.Conn, sess uint64, size int64, data io.Reader) error {
	chunk := int64(t.cfg.SnapshotChunk)
	window := max(1, t.cfg.SnapshotWindow/t.cfg.SnapshotChunk)
	var inflight []chunkCall
	defer func() {
		for _, cc := range inflight {
			cc.f.Cancel()
			cc.cancel()
		}
	}()
	wait := func() error {
		cc := inflight[0]
		inflight = inflight[1:]
		b, err := cc.f.Wait()
		cc.cancel()
		if err == nil {
			_, err = decodeReply(b)
		}
		return err
	}
	buf := make([]byte, 0, 32+chunk)
	for off := int64(0); off < size; {
		n := min(chunk, size-off)
		hdr := appendSnapChunk(buf[:0], &snapChunk{Session: sess, Offset: uint64(off)})
		buf = hdr[:len(hdr)+int(n)]
		if _, err := io.ReadFull(data, buf[len(hdr):]); err != nil {
			return fmt.Errorf("%w: the snapshot's source gave %d of %d bytes: %w", ErrSnapshotTruncated, off, size, err)
		}
		ctx, cancel := context.WithTimeout(t.ctx, t.cfg.Timeout)
		f, err := c.Go(ctx, mSnapChunk, buf)
		if err != nil {
			cancel()
			return err
		}
		inflight = append(inflight, chunkCall{f, cancel})
		off += n
		if len(inflight) >= window {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	for len(inflight) > 0 {
		if err := wait(); err != nil {
			return err
		}
	}
	var one [1]byte
	if n, _ := data.Read(one[:]); n > 0 {
		t.cfg.Logger.Warn("raft: snapshot source longer than its Size; sent Size bytes", "size", size)
	}
	return nil
}
