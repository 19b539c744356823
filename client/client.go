package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/conn"
)

// DefaultPort is the client RPC port (client-rpc-port).
const DefaultPort = 7912

// options collects the Options of Start and StartReconnecting.
type options struct {
	tls         *tls.Config
	plaintext   bool
	insecure    bool
	minPlatform uint32
	timeout     time.Duration
	nodeID      string
	logger      *slog.Logger
	tune        func(*conn.Config)
	callSites   bool
	err         error
	reconnect   reconnectOptions // StartReconnecting's only (reconnect.go)
}

// Option configures Start and StartReconnecting.
type Option func(*options)

// WithTLS speaks TLS with cfg, which must verify the server (RootCAs and
// ServerName, or a VerifyPeerCertificate of its own).
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithCA speaks TLS and verifies the server's certificate against roots
// for serverName (a DNS name or an IP address in the certificate).
func WithCA(roots *x509.CertPool, serverName string) Option {
	return WithTLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: serverName})
}

// WithPinnedCertificate speaks TLS and accepts exactly the server
// certificate certPEM (the server's client-rpc-cert-path file), whatever
// signed it: for self-signed development and small deployments.
func WithPinnedCertificate(certPEM []byte) Option {
	return func(o *options) {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(certPEM) {
			o.err = errors.New("client: WithPinnedCertificate: no PEM certificate")
			return
		}
		der := pemDER(certPEM)
		o.tls = &tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: true, // replaced by the pin below
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 || !bytes.Equal(raw[0], der) {
					return errors.New("client: the server's certificate is not the pinned one")
				}
				return nil
			},
		}
	}
}

// Plaintext speaks without TLS, to a server whose client port has no
// certificate. The password crosses in clear, so Start refuses a
// non-loopback address unless InsecurePlaintext is given as well.
func Plaintext() Option { return func(o *options) { o.plaintext = true } }

// InsecurePlaintext allows Plaintext to a non-loopback address.
func InsecurePlaintext() Option {
	return func(o *options) { o.plaintext, o.insecure = true, true }
}

// MinimumPlatformVersion makes Start fail, with a *hawser.VersionError
// (hawser.ErrUnsupported) naming both versions, if the server's platform
// version is below v.
func MinimumPlatformVersion(v uint32) Option { return func(o *options) { o.minPlatform = v } }

// WithTimeout bounds connect, TLS and login (default 5 s: the server
// hashes the password).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithName names the client to the server (HELLO NodeID, in its logs).
func WithName(name string) Option { return func(o *options) { o.nodeID = name } }

// WithLogger receives connection events.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithConnConfig tunes the connection (windows, keepalive, compression)
// before it is dialed; its TLS, Login and cluster key are Start's.
func WithConnConfig(f func(*conn.Config)) Option { return func(o *options) { o.tune = f } }

// TrackCallSites records, for each observable and future received, the
// stack that received it, so that the warning about one that was
// garbage-collected without Close says where it came from (Corda's
// trackRpcCallSites). It costs a stack walk per handle: for debugging.
func TrackCallSites() Option { return func(o *options) { o.callSites = true } }

// DefaultTimeout is WithTimeout's default.
const DefaultTimeout = 5 * time.Second

// Conn is a logged-in client connection. It implements hawser.Caller, so
// typed methods, streams and flows call through it; and
// hawser.PlatformVersioned, so methods declared Since a later platform
// version fail locally.
type Conn struct {
	c         *conn.Conn
	eng       *conn.Engine
	platform  uint32
	user      string
	log       *slog.Logger
	callSites bool
}

// Start connects to a node's client port at addr ("host:port"; a bare
// host means port 7912), logs in as username, and returns the connection.
// The connection is expensive (TCP, TLS, a password hash on the server):
// make one and reuse it; it is safe for concurrent use with many calls in
// flight. ctx bounds the connect and login only. Close it when done.
func Start(ctx context.Context, addr, username, password string, opts ...Option) (*Conn, error) {
	o, err := resolve(opts)
	if err != nil {
		return nil, err
	}
	addr = withPort(addr)
	if err := o.check(addr); err != nil {
		return nil, err
	}
	return start(ctx, addr, username, password, &o)
}

// resolve applies opts over the defaults.
func resolve(opts []Option) (options, error) {
	o := options{timeout: DefaultTimeout}
	for _, f := range opts {
		f(&o)
	}
	return o, o.err
}

// check refuses options that no attempt to connect to addr could use.
func (o *options) check(addr string) error {
	if o.tls == nil && !o.plaintext {
		return errors.New("client: choose TLS (WithCA, WithPinnedCertificate, WithTLS) or Plaintext")
	}
	if o.tls != nil && o.plaintext {
		return errors.New("client: TLS and Plaintext options conflict")
	}
	if o.plaintext && !o.insecure && !loopback(addr) {
		return fmt.Errorf("client: refusing to send a password in clear to %s, which is not a loopback address: use TLS, or InsecurePlaintext if the network is trusted", addr)
	}
	return nil
}

// start connects to addr (with its port) and logs in, with checked
// options.
func start(ctx context.Context, addr, username, password string, o *options) (*Conn, error) {
	cfg := &conn.Config{}
	if o.tune != nil {
		o.tune(cfg)
	}
	cfg.TLS, cfg.InsecurePlaintext = o.tls, o.plaintext
	cfg.ClusterKey = nil
	cfg.Login = &conn.Login{Username: username, Password: password}
	cfg.Timeout = o.timeout
	if o.nodeID != "" {
		cfg.NodeID = o.nodeID
	}
	if o.logger != nil {
		cfg.Logger = o.logger
	}
	if cfg.DialRead == conn.DialReadAuto {
		cfg.DialRead = conn.DialReadPoller // one connection: no event loop of its own
	}
	eng, err := conn.NewEngine(conn.EngineConfig{Loops: 1})
	if err != nil {
		return nil, err
	}
	c, err := conn.Dial(ctx, eng, addr, cfg)
	if err != nil {
		_ = eng.Close()
		return nil, err
	}
	cc := &Conn{c: c, eng: eng, platform: c.PeerPlatformVersion(), user: username, log: o.logger, callSites: o.callSites}
	if o.minPlatform > cc.platform {
		_ = cc.Close()
		return nil, &hawser.VersionError{Required: o.minPlatform, Server: cc.platform}
	}
	return cc, nil
}

// Use starts a connection, runs f with it and closes it, returning f's
// error (or Start's).
func Use(ctx context.Context, addr, username, password string, f func(*Conn) error, opts ...Option) error {
	c, err := Start(ctx, addr, username, password, opts...)
	if err != nil {
		return err
	}
	err = f(c)
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return err
}

// Call makes a raw call (hawser.Caller).
func (c *Conn) Call(ctx context.Context, method uint64, req []byte, opts ...hawser.CallOption) ([]byte, error) {
	return c.c.Call(ctx, method, req, opts...)
}

// OpenStream opens a raw stream (hawser.Caller).
func (c *Conn) OpenStream(ctx context.Context, method uint64, req []byte, opts ...hawser.CallOption) (hawser.RawStream, error) {
	return c.c.OpenStream(ctx, method, req, opts...)
}

// HandleLogger is where warnings about leaked observables and futures go
// (hawser.HandleHost): WithLogger's logger, or slog.Default().
func (c *Conn) HandleLogger() *slog.Logger { return c.log }

// TrackCallSites reports whether TrackCallSites was set (hawser.HandleHost).
func (c *Conn) TrackCallSites() bool { return c.callSites }

// PlatformVersion is the server's platform version, as it announced it
// at connect.
func (c *Conn) PlatformVersion() uint32 { return c.platform }

// QueryPlatformVersion asks the server for its platform version with a
// call (hawser.platformVersion), which needs no permission.
func (c *Conn) QueryPlatformVersion(ctx context.Context) (uint32, error) {
	out, err := c.c.Call(ctx, platformVersionID, nil)
	if err != nil {
		return 0, err
	}
	if len(out) != 4 {
		return 0, fmt.Errorf("client: %s answered %d bytes, want 4", hawser.PlatformVersionMethod, len(out))
	}
	return binary.BigEndian.Uint32(out), nil
}

var platformVersionID = codec.MethodID(hawser.PlatformVersionMethod)

// User is the username the connection logged in as.
func (c *Conn) User() string { return c.user }

// Done is closed when the connection has closed (Close, the server's
// shutdown, a failure); Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.c.Done() }

// Err is why the connection closed, or nil while it is open.
func (c *Conn) Err() error { return c.c.Err() }

// Conn is the underlying connection (stats, Go, GoFunc).
func (c *Conn) Conn() *conn.Conn { return c.c }

// Close closes the connection at once (calls in flight fail with a
// transport error) and stops its goroutines.
func (c *Conn) Close() error {
	err := c.c.Close()
	<-c.c.Done()
	if e := c.eng.Close(); err == nil && !errors.Is(e, conn.ErrEngineClosed) {
		err = e
	}
	return err
}

// Shutdown lets calls in flight finish, then closes (up to ctx).
func (c *Conn) Shutdown(ctx context.Context) error {
	err := c.c.Shutdown(ctx)
	if e := c.eng.Close(); err == nil && !errors.Is(e, conn.ErrEngineClosed) {
		err = e
	}
	return err
}

func withPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(addr, fmt.Sprint(DefaultPort))
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
