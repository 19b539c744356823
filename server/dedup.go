package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/conn"
)

// Request-ID deduplication (PROTOCOL.md §5.4.1): a unary call or a flow
// start whose metadata carries hawser.RequestIDKey runs at most once per
// (user, method, request ID) while its outcome is kept; a repeat that
// arrives while the first runs waits for its outcome, one that arrives
// later gets the kept outcome, and neither runs the handler.

// DedupConfig bounds the server's table of request IDs. Zero values mean
// the defaults. The table is in the server's memory: it does not survive
// a restart (a new Server starts with an empty one, under a new table ID
// that hawser.DedupInfoMethod announces, so that a client can tell).
type DedupConfig struct {
	// Window is how long an outcome is kept after its call completed: a
	// repeat within it gets the outcome, a later one runs again. Default
	// 10 minutes (past a reconnecting client's default backoff, which
	// reaches its 3-minute cap after 8 attempts). Negative turns
	// deduplication off: calls with a request ID run every time, and the
	// server does not serve hawser.DedupInfoMethod.
	Window time.Duration
	// MaxEntries bounds the outcomes kept. When it is reached the oldest
	// is dropped, before its window ends (DedupStats.Evicted counts them,
	// and the server logs a warning at most once a minute): a repeat of
	// that call would run again. Size it for the rate of calls with a
	// request ID times Window. Default 10,000.
	MaxEntries int
	// MaxReplyBytes bounds one kept reply. A call whose reply is longer
	// is answered as usual, but only the fact that it ran is kept: a
	// repeat gets hawser.ErrOutcomeUnknown, never a second run. Default
	// 64 KiB.
	MaxReplyBytes int
	// MaxBytes bounds the bytes of all kept outcomes (replies, error
	// messages, usernames and about 200 bytes of bookkeeping each); past
	// it the oldest are dropped as for MaxEntries. Default 64 MiB.
	MaxBytes int
}

// Defaults of DedupConfig.
const (
	DefaultDedupWindow        = 10 * time.Minute
	DefaultDedupMaxEntries    = 10000
	DefaultDedupMaxReplyBytes = 64 << 10
	DefaultDedupMaxBytes      = 64 << 20
)

// entryOverhead approximates what a kept outcome costs besides its bytes:
// the entry, its list element and map slot.
const entryOverhead = 200

// maxKeptMessage is what is kept of an error's message: what the wire
// carries (PROTOCOL.md §3.5).
const maxKeptMessage = 4096

func (c DedupConfig) withDefaults() DedupConfig {
	if c.Window == 0 {
		c.Window = DefaultDedupWindow
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultDedupMaxEntries
	}
	if c.MaxReplyBytes <= 0 {
		c.MaxReplyBytes = DefaultDedupMaxReplyBytes
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultDedupMaxBytes
	}
	return c
}

// DedupStats is a snapshot of the request-ID table.
type DedupStats struct {
	Entries int // outcomes kept
	Bytes   int // their cost against MaxBytes
	Running int // calls with a request ID whose handler runs
	Waiting int // repeats waiting for such a call's outcome
	// Hits counts repeats answered without running the handler; Waited
	// those of them that waited for the first attempt to finish.
	Hits, Waited uint64
	// NotKept counts outcomes of which only the fact that the call ran was
	// kept (reply over MaxReplyBytes, or a panic).
	NotKept uint64
	// Evicted counts outcomes dropped before their window ended.
	Evicted uint64
}

// DedupStats returns a snapshot of the request-ID table (zero when
// deduplication is off).
func (s *Server) DedupStats() DedupStats {
	if s.dedup == nil {
		return DedupStats{}
	}
	return s.dedup.stats()
}

type dedupKey struct {
	user   string
	method uint64
	id     hawser.RequestID
}

// dedupEntry is one call with a request ID: running while done is open,
// then its outcome, immutable.
type dedupEntry struct {
	hash uint64        // xxhash64 of the request payload
	done chan struct{} // closed once the outcome is set

	reply   []byte     // the reply (code CodeOK), owned by the entry
	code    codec.Code // CodeOK or the error's code
	name    string     // the error's registered name
	msg     string     // the error's message
	unknown bool       // the outcome was not kept
	expires time.Time
	size    int
}

// dedupTable is a server's request-ID table.
type dedupTable struct {
	// Immutable after newDedupTable.
	cfg  DedupConfig
	id   [16]byte // this table's ID, announced by DedupInfoMethod
	info []byte   // DedupInfoMethod's reply
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex // guards everything below
	running map[dedupKey]*dedupEntry
	kept    *simplelru.LRU[dedupKey, *dedupEntry] // in completion order: looked up with Peek only
	bytes   int
	waiting int
	st      DedupStats
	warned  time.Time // the last eviction warning
}

func newDedupTable(cfg DedupConfig, log *slog.Logger) *dedupTable {
	cfg = cfg.withDefaults()
	t := &dedupTable{cfg: cfg, log: log, now: time.Now, running: map[dedupKey]*dedupEntry{}}
	_, _ = rand.Read(t.id[:]) // never fails (crypto/rand crashes the program instead)
	t.info = binary.BigEndian.AppendUint64(append([]byte(nil), t.id[:]...), uint64(cfg.Window.Milliseconds()))
	// NewLRU fails only for a size below 1, which withDefaults rules out.
	t.kept, _ = simplelru.NewLRU(cfg.MaxEntries, t.onEvict)
	return t
}

// startDedup makes the server's request-ID table and serves
// DedupInfoMethod, which needs no permission; with deduplication off it
// does neither.
func (s *Server) startDedup() {
	if s.cfg.Dedup.Window < 0 {
		return
	}
	s.dedup = newDedupTable(s.cfg.Dedup, s.log)
	info := s.dedup.info
	id := codec.MethodID(hawser.DedupInfoMethod)
	r := &conn.Route{Mode: conn.ModeInline, Unary: func(context.Context, *conn.Request) ([]byte, error) {
		return info, nil
	}}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[id], s.names[id] = r, hawser.DedupInfoMethod
	s.ids = append(s.ids, id)
}

// dedupRoute wraps a unary route with the request-ID table (streams are
// not deduplicated). Calls without metadata take one length check.
func (s *Server) dedupRoute(method uint64, r *conn.Route) *conn.Route {
	t, u := s.dedup, r.Unary
	if t == nil || u == nil {
		return r
	}
	// An Inline handler runs on the event loop, where nothing may wait: a
	// repeat that finds its first attempt running is refused instead.
	wait := r.Mode != conn.ModeInline
	g := *r
	g.Unary = func(ctx context.Context, req *conn.Request) ([]byte, error) {
		if len(req.Metadata) == 0 {
			return u(ctx, req)
		}
		return t.do(ctx, req, method, wait, u)
	}
	return &g
}

// do runs run(ctx, req) at most once per (user, method, request ID),
// unless req carries no request ID.
func (t *dedupTable) do(ctx context.Context, req *conn.Request, method uint64, wait bool, run func(context.Context, *conn.Request) ([]byte, error)) ([]byte, error) {
	v, ok := req.Metadata.Get(hawser.RequestIDKey)
	if !ok {
		return run(ctx, req)
	}
	if len(v) != len(hawser.RequestID{}) {
		return nil, hawser.ErrBadRequestID
	}
	key := dedupKey{method: method, id: hawser.RequestID(v)}
	if c, ok := conn.FromContext(ctx); ok {
		key.user = c.User() // "" on a cluster port: its peers share one namespace
	}
	hash := xxhash.Sum64(req.Payload)

	t.mu.Lock()
	now := t.now()
	t.expireLocked(now)
	if e := t.running[key]; e != nil {
		if e.hash != hash || !wait {
			t.mu.Unlock()
			if e.hash != hash {
				return nil, hawser.ErrRequestIDReused
			}
			return nil, hawser.ErrRequestInProgress
		}
		t.waiting++
		t.mu.Unlock()
		var err error
		select {
		case <-e.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
		t.mu.Lock()
		t.waiting--
		if err == nil {
			t.st.Hits++
			t.st.Waited++
		}
		t.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return e.outcome()
	}
	if e, ok := t.kept.Peek(key); ok {
		reused := e.hash != hash
		if !reused {
			t.st.Hits++
		}
		t.mu.Unlock()
		if reused {
			return nil, hawser.ErrRequestIDReused
		}
		return e.outcome()
	}
	e := &dedupEntry{hash: hash, done: make(chan struct{})}
	t.running[key] = e
	t.mu.Unlock()

	finished := false
	defer func() {
		if !finished { // run panicked: it ran, with no outcome to keep
			t.complete(key, e, nil, nil, true)
		}
	}()
	reply, err := run(ctx, req)
	finished = true
	t.complete(key, e, reply, err, false)
	return reply, err
}

// outcome is a completed entry's result, as the first attempt's caller
// got it (a handler error re-created from its wire form).
func (e *dedupEntry) outcome() ([]byte, error) {
	switch {
	case e.unknown:
		return nil, hawser.ErrOutcomeUnknown
	case e.code != codec.CodeOK:
		return nil, hawser.NewRemoteError(e.code, e.name, e.msg)
	}
	return e.reply, nil
}

// complete records the outcome of e's run, wakes the repeats waiting for
// it and keeps it (if it fits) for the window.
func (t *dedupTable) complete(key dedupKey, e *dedupEntry, reply []byte, err error, panicked bool) {
	switch {
	case panicked:
		e.unknown = true
	case err != nil:
		e.code, e.name, e.msg = hawser.WireError(err)
		if e.code == codec.CodeOK {
			e.code = codec.CodeUnknown // as conn sends it
		}
		if len(e.msg) > maxKeptMessage {
			e.msg = e.msg[:maxKeptMessage]
		}
	case len(reply) > t.cfg.MaxReplyBytes:
		e.unknown = true
	default:
		// The reply is in a buffer the connection recycles: keep a copy.
		e.reply = append(make([]byte, 0, len(reply)), reply...)
	}
	e.size = entryOverhead + len(key.user) + len(e.reply) + len(e.name) + len(e.msg)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	e.expires = now.Add(t.cfg.Window)
	close(e.done)
	delete(t.running, key)
	if e.unknown {
		t.st.NotKept++
	}
	t.kept.Remove(key) // an expired twin, if the sweep has not reached it
	t.kept.Add(key, e)
	t.bytes += e.size
	for t.bytes > t.cfg.MaxBytes {
		if _, _, ok := t.kept.RemoveOldest(); !ok {
			break
		}
	}
}

// expireLocked drops the outcomes whose window has ended: the oldest
// first, as they were added in completion order with one window.
func (t *dedupTable) expireLocked(now time.Time) {
	for {
		k, e, ok := t.kept.GetOldest()
		if !ok || e.expires.After(now) {
			return
		}
		t.kept.Remove(k)
	}
}

// onEvict accounts for an outcome leaving the table (under t.mu: every
// LRU call is made under it).
func (t *dedupTable) onEvict(_ dedupKey, e *dedupEntry) {
	t.bytes -= e.size
	now := t.now()
	if !e.expires.After(now) {
		return
	}
	t.st.Evicted++
	if now.Sub(t.warned) >= time.Minute {
		t.warned = now
		t.log.Warn("hawser: request-ID table full: outcomes dropped before their window ended; their repeats would run again (raise Dedup.MaxEntries or MaxBytes)",
			"evicted", t.st.Evicted, "entries", t.kept.Len(), "bytes", t.bytes)
	}
}

func (t *dedupTable) stats() DedupStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.st
	st.Entries, st.Bytes, st.Running, st.Waiting = t.kept.Len(), t.bytes, len(t.running), t.waiting
	return st
}
