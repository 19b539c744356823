package conn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/hawser-rpc/hawser/codec"
)

// Config configures one side of a connection. The zero value of every field
// but TLS (or InsecurePlaintext) and ClusterKey means its default.
type Config struct {
	// TLS configures TLS. The dialer needs at least InsecureSkipVerify or a
	// ServerName; the acceptor needs Certificates. MinVersion below TLS 1.2
	// is raised to 1.2; the default maximum is TLS 1.3. ClientTLS and
	// ServerTLS build the usual configurations, with session resumption.
	// As crypto/tls requires, it must not be modified once in use:
	// accepted connections share it unless it needs one of these changes
	// (or DynamicRecordSizingDisabled); Dial clones it to key its session
	// cache by address.
	TLS *tls.Config

	// InsecurePlaintext runs the protocol without TLS. The cluster-key proof
	// still authenticates the peer, but nothing is encrypted and a
	// man in the middle can read and relay traffic. For tests and
	// benchmarks on trusted networks only.
	InsecurePlaintext bool

	// ClusterKey is the cluster's shared secret; each side proves it holds
	// it. Required, at least 16 bytes.
	ClusterKey []byte

	// Login makes a dialing side log in as a user (client RPC,
	// PROTOCOL.md §5.4) instead of proving the cluster key: its HELLO
	// carries the username and password, which only TLS protects, and the
	// acceptor is authenticated by TLS alone (verify its certificate in
	// TLS). ClusterKey must then be empty.
	Login *Login

	// Authenticate makes an accepting side a client RPC acceptor: a dialer
	// must log in, and Authenticate decides, before any call runs, with
	// the handshake's context (Timeout bounds it). It returns the session
	// the connection carries (Conn.Session), or an error that goes to the
	// dialer in a GOAWAY: its code and registered name as WireError gives
	// them (CodeUnauthenticated when it has none), so it must not say more
	// than the dialer may know. ClusterKey must then be empty.
	Authenticate func(ctx context.Context, l LoginRequest) (session any, err error)

	// PlatformVersion is the application's version an acceptor announces
	// in HELLO_ACK (Corda's platform version); Conn.PeerPlatformVersion
	// gives the dialer the peer's. 0 announces nothing.
	PlatformVersion uint32

	// NodeID and AppVersion identify this side to the peer (at most 255
	// bytes each).
	NodeID     string
	AppVersion string

	// Timeout bounds connect + TLS + authentication (rpc-timeout).
	// Default 1s.
	Timeout time.Duration

	// InactivityTimeout closes a connection with no calls or streams in
	// flight and no call traffic for this long (rpc-inactivity-timeout).
	// Default 300s; negative disables.
	InactivityTimeout time.Duration

	// KeepaliveInterval is how long the connection may be silent before a
	// PING is sent; KeepaliveTimeout is how long to wait for any frame after
	// it before the connection is declared dead. Defaults 10s and 5s;
	// a negative interval disables keepalive.
	KeepaliveInterval time.Duration
	KeepaliveTimeout  time.Duration

	// MaxFrameSize is the largest frame body accepted (announced to the
	// peer). Default codec.DefaultMaxFrameSize, range 16 KiB to 16 MiB.
	MaxFrameSize uint32

	// MaxMessageSize is the largest reassembled message accepted (announced).
	// Default codec.DefaultMaxMessageSize (16 MiB).
	MaxMessageSize uint32

	// StreamWindow is the receive window per stream, in bytes: how much a
	// stream's sender may have in flight before the consumer reads it.
	// Default 256 KiB, minimum 4 KiB.
	StreamWindow uint32

	// MaxCalls and MaxStreams bound the calls and streams a peer may have in
	// flight on one accepted connection (announced in HELLO_ACK). Defaults
	// 1024 and 256. Ignored when dialing.
	MaxCalls   uint32
	MaxStreams uint32

	// PoolShare bounds the ModePool calls of one accepted connection that
	// run on the Router's pool at once; more wait, in arrival order, in the
	// connection's own queue and run on the goroutine of one that finishes.
	// So one connection cannot take every worker of a shared pool, however
	// slow its handlers. Default 128 (a server sets MaxWorkers/8).
	PoolShare int

	// WriteHighWater bounds the bytes queued for sending on a connection
	// (hawser's queues and gnet's buffer): a caller that would exceed it
	// waits (push back) instead of growing the queue, and a handler's reply
	// waits in the connection's outbox without holding its goroutine.
	// Urgent messages wait only at twice the mark, so they pass a full bulk
	// backlog; header-only control frames never wait (PROTOCOL.md §9).
	// Default 1 MiB, minimum 256 KiB.
	WriteHighWater int

	// WriteStallTimeout closes a connection, with GOAWAY SlowReader, when
	// bytes wait to be written to it and none could be for this long: the
	// peer stopped reading. Default 15s (keepalive's 10s plus 5s, so a peer
	// that is alive but never reads goes the way of a dead one); negative
	// disables.
	WriteStallTimeout time.Duration

	// MaxInputBacklog bounds the received bytes a connection holds without
	// processing them. Its loop stops reading a peer whose input makes it
	// queue output (PONG, ERROR for refused calls, inline replies) while
	// its unsent output is at twice WriteHighWater, until the output has
	// drained below 1.5 times it; past this bound of unprocessed input the
	// peer is closed
	// with GOAWAY SlowReader (PROTOCOL.md §9). Default 2 MiB, minimum
	// twice MaxFrameSize.
	MaxInputBacklog int

	// LoopWrites makes every write go through the event loop. By default a
	// goroutine that queues a frame when nothing else is queued, being
	// written or buffered writes the socket itself (a non-blocking writev;
	// what the socket does not take is left to the loop), which saves
	// waking the loop for a lone call or reply; under load frames queue
	// and the loop batches them as before.
	LoopWrites bool

	// DialRead chooses how a dialed connection is read (the acceptor
	// ignores it): on the Engine's event loop, as an accepted connection
	// is, or by a goroutine parked in Go's network poller (a node dials
	// few connections). The default, DialReadAuto, uses the poller when
	// GOMAXPROCS is 1: there an event loop blocked in epoll holds the only
	// P, and the scheduler takes it back and starts a thread around every
	// reply, while a poller goroutine wakes its caller on the same thread.
	// With more Ps the loop is as fast and batches better.
	DialRead DialRead

	// SocketBuffer sets the kernel's send and receive buffers of the
	// socket (SO_SNDBUF, SO_RCVBUF; Linux doubles the value). Small buffers
	// keep the backlog in hawser's queue, where urgent frames overtake bulk
	// ones, instead of in the kernel, where nothing can (PROTOCOL.md §9).
	// Default 128 KiB, enough for a LAN's bandwidth-delay product; raise it
	// for long, fast links; negative leaves the kernel's autotuning.
	SocketBuffer int

	// Compression announces s2 payload compression; it is used when both
	// sides announce it, for payloads of at least CompressThreshold bytes
	// (default 1 KiB) that compress smaller.
	Compression       bool
	CompressThreshold int

	// Logger receives connection-level events (protocol violations,
	// authentication failures). Default: discard.
	Logger *slog.Logger

	// OnError, if set, is called with every error that closes a connection
	// (a protocol violation, a failed handshake, a keepalive timeout).
	// It must not block.
	OnError func(remote string, err error)

	// OnClose, if set, is called once when the connection has closed and its
	// pending calls have failed. It runs on the event loop: it must not
	// block.
	OnClose func(c *Conn)

	// Router serves calls on accepted connections. Required by Accept.
	Router Router

	authKey  []byte    // derived from ClusterKey by resolved
	versions [2]uint16 // protocol versions spoken; tests narrow them
}

// Defaults (see Config).
const (
	DefaultTimeout           = time.Second
	DefaultInactivityTimeout = 300 * time.Second
	DefaultKeepaliveInterval = 10 * time.Second
	DefaultKeepaliveTimeout  = 5 * time.Second
	DefaultStreamWindow      = 256 << 10
	DefaultMaxCalls          = 1024
	DefaultMaxStreams        = 256
	DefaultWriteHighWater    = 1 << 20
	DefaultSocketBuffer      = 128 << 10
	DefaultWriteStallTimeout = 15 * time.Second
	DefaultMaxInputBacklog   = 2 << 20
	DefaultPoolShare         = 128
	minWriteHighWater        = 256 << 10
	minClusterKey            = 16
)

// DialRead is how a dialed connection is read; see Config.DialRead.
type DialRead uint8

const (
	DialReadAuto   DialRead = iota // the poller with GOMAXPROCS 1, else the loop
	DialReadLoop                   // the Engine's event loop
	DialReadPoller                 // a goroutine in Go's network poller
)

// Login is a dialer's username and password (Config.Login).
type Login struct {
	Username string // 1 to codec.MaxUsername bytes
	Password string // at most codec.MaxPassword bytes
}

// LoginRequest is what Config.Authenticate is asked to decide on.
type LoginRequest struct {
	Remote   net.Addr // the dialer's address
	Username string
	Password string
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("conn: invalid configuration")

// resolved returns a copy of c with defaults applied, or an error.
func (c *Config) resolved(dialing bool) (*Config, error) {
	r := *c
	if dialing {
		r.Router = nil
	}
	if dialing {
		r.Authenticate = nil
	} else {
		r.Login = nil
	}
	switch {
	case r.Login != nil || r.Authenticate != nil:
		if len(r.ClusterKey) != 0 {
			return nil, fmt.Errorf("%w: a client RPC connection (Login or Authenticate) takes no cluster key", ErrConfig)
		}
		if l := r.Login; l != nil && (l.Username == "" || len(l.Username) > codec.MaxUsername || len(l.Password) > codec.MaxPassword) {
			return nil, fmt.Errorf("%w: a username of 1 to %d bytes and a password of at most %d are required", ErrConfig, codec.MaxUsername, codec.MaxPassword)
		}
	case len(r.ClusterKey) < minClusterKey:
		return nil, fmt.Errorf("%w: cluster key must be at least %d bytes", ErrConfig, minClusterKey)
	}
	if !r.InsecurePlaintext {
		if r.TLS == nil {
			return nil, fmt.Errorf("%w: TLS is required (or set InsecurePlaintext)", ErrConfig)
		}
		t := r.TLS
		// Full-size records from the first byte: hawser batches frames and
		// never benefits from small initial records. A configuration that
		// needs no change is shared, as crypto/tls allows, rather than
		// cloned for every connection (about 470 bytes each).
		if t.MinVersion < tls.VersionTLS12 || !t.DynamicRecordSizingDisabled {
			t = t.Clone()
			t.MinVersion = max(t.MinVersion, tls.VersionTLS12)
			t.DynamicRecordSizingDisabled = true
		}
		if !dialing && len(t.Certificates) == 0 && t.GetCertificate == nil {
			return nil, fmt.Errorf("%w: an accepting side needs a TLS certificate", ErrConfig)
		}
		r.TLS = t
	}
	if len(r.NodeID) > 255 || len(r.AppVersion) > 255 {
		return nil, fmt.Errorf("%w: NodeID and AppVersion are limited to 255 bytes", ErrConfig)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&r.Timeout, DefaultTimeout)
	def(&r.InactivityTimeout, DefaultInactivityTimeout)
	def(&r.KeepaliveInterval, DefaultKeepaliveInterval)
	def(&r.KeepaliveTimeout, DefaultKeepaliveTimeout)
	def(&r.WriteStallTimeout, DefaultWriteStallTimeout)
	if r.MaxFrameSize == 0 {
		r.MaxFrameSize = codec.DefaultMaxFrameSize
	}
	if r.MaxFrameSize < codec.MinMaxFrameSize || r.MaxFrameSize > codec.HardMaxFrameSize {
		return nil, fmt.Errorf("%w: MaxFrameSize %d outside [%d, %d]", ErrConfig, r.MaxFrameSize, codec.MinMaxFrameSize, codec.HardMaxFrameSize)
	}
	if r.MaxMessageSize == 0 {
		r.MaxMessageSize = codec.DefaultMaxMessageSize
	}
	if r.MaxMessageSize < codec.MinMaxFrameSize || r.MaxMessageSize > codec.HardMaxMessageSize {
		return nil, fmt.Errorf("%w: MaxMessageSize %d outside [%d, %d]", ErrConfig, r.MaxMessageSize, codec.MinMaxFrameSize, codec.HardMaxMessageSize)
	}
	if r.StreamWindow == 0 {
		r.StreamWindow = DefaultStreamWindow
	}
	if r.StreamWindow < codec.MinStreamWindow {
		return nil, fmt.Errorf("%w: StreamWindow %d below %d", ErrConfig, r.StreamWindow, codec.MinStreamWindow)
	}
	if r.MaxCalls == 0 {
		r.MaxCalls = DefaultMaxCalls
	}
	if r.MaxStreams == 0 {
		r.MaxStreams = DefaultMaxStreams
	}
	if r.WriteHighWater == 0 {
		r.WriteHighWater = DefaultWriteHighWater
	}
	r.WriteHighWater = max(r.WriteHighWater, minWriteHighWater)
	if r.PoolShare <= 0 {
		r.PoolShare = DefaultPoolShare
	}
	if r.MaxInputBacklog == 0 {
		r.MaxInputBacklog = DefaultMaxInputBacklog
	}
	r.MaxInputBacklog = max(r.MaxInputBacklog, 2*int(r.MaxFrameSize))
	if r.SocketBuffer == 0 {
		r.SocketBuffer = DefaultSocketBuffer
	}
	if r.CompressThreshold <= 0 {
		r.CompressThreshold = codec.DefaultCompressThreshold
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if len(r.ClusterKey) > 0 {
		r.authKey = authKey(r.ClusterKey)
	}
	if r.versions == [2]uint16{} {
		r.versions = [2]uint16{codec.VersionMin, codec.VersionMax}
	}
	if !dialing && r.Router == nil {
		return nil, fmt.Errorf("%w: an accepting side needs a Router", ErrConfig)
	}
	return &r, nil
}

// ClientTLS returns the dialer's TLS configuration for rpc-tls-domain: with
// a domain, the peer's certificate must be valid for it and chain to roots
// (nil: the system roots); without one, any certificate is accepted and the
// cluster key alone authenticates the peer.
//
// It caches TLS sessions (ClientSessionCacheSize of them, shared by the
// connections dialed with this configuration and its clones), so that a
// redial resumes: in TLS 1.3 a PSK handshake that skips the certificate
// and its signature but still runs a fresh key exchange (Go offers only
// psk_dhe_ke). Dial keys the sessions by the address it dials, so peers
// that share one rpc-tls-domain do not evict each other's. Resumption
// does not replace the cluster-key proof: it binds the exporter of each
// connection's own handshake (PROTOCOL.md §5.3).
func ClientTLS(domain string, roots *x509.CertPool) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, DynamicRecordSizingDisabled: true,
		ClientSessionCache: tls.NewLRUClientSessionCache(ClientSessionCacheSize)}
	if domain == "" {
		c.InsecureSkipVerify = true // the cluster-key proof authenticates the peer
		return c
	}
	c.ServerName = domain
	c.RootCAs = roots
	return c
}

// ClientSessionCacheSize is how many TLS sessions a ClientTLS
// configuration keeps: one per peer is enough to resume to it.
const ClientSessionCacheSize = 256

// ServerTLS returns an acceptor's TLS configuration for a certificate. It
// issues session tickets, so that dialers resume (see ClientTLS), under
// keys crypto/tls generates and rotates (a new one every day, each valid a
// week) and keeps in memory only. The keys are held outside the returned
// configuration, so its clones (the server clones it once) share
// them: with a plain tls.Config, each clone would make keys of its own and
// no ticket would ever resume. A configuration of your own resumes across
// connections only if it sets its keys (SetSessionTicketKeys) or
// WrapSession and UnwrapSession.
func ServerTLS(cert tls.Certificate) *tls.Config {
	keys := new(tls.Config) // only its automatic ticket keys are used
	return &tls.Config{
		MinVersion:                  tls.VersionTLS12,
		Certificates:                []tls.Certificate{cert},
		DynamicRecordSizingDisabled: true,
		WrapSession: func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			return keys.EncryptTicket(cs, ss)
		},
		UnwrapSession: func(ticket []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			return keys.DecryptTicket(ticket, cs)
		},
	}
}

// addrSessionCache keys a shared session cache by the dialed address as
// well, because crypto/tls keys it by ServerName alone when one is set.
type addrSessionCache struct {
	addr  string
	cache tls.ClientSessionCache
}

func (a addrSessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	return a.cache.Get(a.addr + " " + key)
}

func (a addrSessionCache) Put(key string, cs *tls.ClientSessionState) {
	a.cache.Put(a.addr+" "+key, cs)
}

// socketControl sets the socket buffers before connect, so that the TCP
// window scale agrees with them.
func (c *Config) socketControl(_, _ string, raw syscall.RawConn) error {
	if c.SocketBuffer <= 0 {
		return nil
	}
	var serr error
	err := raw.Control(func(fd uintptr) {
		if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, c.SocketBuffer); serr == nil {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, c.SocketBuffer)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
