package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/config"
	"github.com/hawser-rpc/hawser/conn"
)

// Config configures a Server. Zero values mean the defaults.
type Config struct {
	// BindAddr and Port are where to listen (rpc-bind-addr, rpc-port).
	// Defaults 0.0.0.0 and 7911. Port -1 picks a free port (tests).
	BindAddr string
	Port     int

	// CertFile and KeyFile name the PEM certificate and key (rpc-cert-path,
	// rpc-key-path). Alternatively set Certificate. One is required.
	CertFile, KeyFile string
	Certificate       *tls.Certificate

	// ClusterKey is the cluster's shared secret (required, >= 16 bytes).
	ClusterKey []byte
	// NodeID and AppVersion are announced to peers.
	NodeID, AppVersion string

	// Timeout bounds TLS + authentication of an accepted connection
	// (rpc-timeout). Default 1s.
	Timeout time.Duration
	// InactivityTimeout closes idle connections (rpc-inactivity-timeout).
	// Default 300s; negative disables.
	InactivityTimeout time.Duration

	// MaxWorkers and QueueSize bound the worker pool of pool-mode handlers.
	// Defaults 1024 and 4096. One connection's calls run on at most
	// MaxWorkers/8 of them at once (Conn.PoolShare); its further calls wait
	// for those. A call that finds the pool full while none of its
	// connection's calls runs gets CodeResourceExhausted at once.
	MaxWorkers, QueueSize int
	// Admission (see admit.go and the README): how much connections that
	// have not authenticated may cost, so that a flood of silent or
	// stalling connections cannot lock legitimate peers out.
	//
	// MaxHandshakes bounds connections in TLS and authentication at once;
	// MaxHandshakesPerSource bounds them per remote IP address. A
	// connection that has sent its first byte waits up to Timeout for a
	// slot rather than being closed. Defaults 256 and 32.
	MaxHandshakes, MaxHandshakesPerSource int
	// MaxPendingConns bounds connections accepted and not yet
	// authenticated; when it is reached, the oldest connection that has
	// not sent a byte is closed to make room (and with none silent, the new
	// one is). MaxSilentPerSource bounds the silent ones per remote IP
	// address the same way. Defaults 1024 and 64.
	MaxPendingConns, MaxSilentPerSource int
	// FirstByteTimeout closes a connection that sends nothing (no TLS
	// ClientHello) for this long after it was accepted. It holds no
	// handshake slot meanwhile, and silent connections are the first
	// closed when MaxPendingConns is reached, so the deadline need not be
	// shorter than the dialer's own (rpc-timeout), which a slowed but
	// legitimate dialer would otherwise miss. Default Timeout (1s).
	FirstByteTimeout time.Duration

	// Auth makes this a client RPC server (client-rpc-port, PROTOCOL.md
	// §5.4): peers log in with a username and password that Auth checks,
	// instead of proving the cluster key (ClusterKey must be empty), and
	// every call but hawser.platformVersion is checked against the user's
	// permissions before its handler runs. TLS is then optional: without
	// a certificate the server speaks plaintext, which it refuses on a
	// non-loopback BindAddr unless InsecurePlaintext is set. BindAddr and
	// Port default to 127.0.0.1 and 7912.
	Auth *auth.Service
	// InsecurePlaintext (client-rpc-insecure-plaintext) lets a client RPC
	// server without a certificate listen on a non-loopback address,
	// where passwords would cross the network in clear.
	InsecurePlaintext bool

	// Observables bounds what each connection's observables and futures
	// may hold here: buffer bytes, overflow policy, count (observe.go).
	Observables ObservableConfig

	// PlatformVersion is the application's version, announced to clients
	// (Corda's platform version) and answered by hawser.platformVersion.
	PlatformVersion uint32

	// Engine, if set, runs this server's connections on an Engine shared
	// with another server or a pool (a node's cluster and client ports),
	// instead of one of its own. The server closes its own connections
	// and leaves the Engine open.
	Engine *conn.Engine

	// Dedup bounds the request-ID table, which makes a unary call or a
	// flow start that carries a request ID (hawser.WithRequestID) run at
	// most once per user and method while its outcome is kept (dedup.go,
	// PROTOCOL.md §5.4.1). On by default.
	Dedup DedupConfig

	// Conn tunes every accepted connection (limits, windows, keepalive,
	// compression). Its TLS, ClusterKey, NodeID, AppVersion, Timeout,
	// InactivityTimeout and Router are set from the fields above.
	Conn conn.Config

	// Logger receives server events. Default slog.Default().
	Logger *slog.Logger
}

// ErrNoCertificate is returned by New when no certificate is configured.
var ErrNoCertificate = errors.New(`server: rpc-cert-path and rpc-key-path are required: hawser always runs TLS.
Make a self-signed pair (the cluster key authenticates peers) with:
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj /CN=$(hostname) -keyout key.pem -out cert.pem
or with: go run github.com/hawser-rpc/hawser/cmd/hawser dev-cert
then set rpc-cert-path: cert.pem and rpc-key-path: key.pem`)

// ErrPlaintextClient is returned by New for a client RPC server without
// TLS on a non-loopback address.
var ErrPlaintextClient = errors.New(`server: the client RPC port has no certificate (client-rpc-cert-path, client-rpc-key-path) and listens on a non-loopback address: clients' passwords would cross the network in clear.
Set client-rpc-cert-path and client-rpc-key-path (hawser dev-cert makes a pair), bind it to 127.0.0.1, or set client-rpc-insecure-plaintext: true if the network is trusted`)

// ConfigFromNode builds a Config from a node's configuration file.
func ConfigFromNode(n config.Node) Config {
	n = n.WithDefaults()
	return Config{
		BindAddr:          n.BindAddr,
		Port:              n.Port,
		CertFile:          n.CertPath,
		KeyFile:           n.KeyPath,
		ClusterKey:        []byte(n.ClusterKey),
		NodeID:            n.NodeID,
		Timeout:           n.Timeout.Duration(),
		InactivityTimeout: n.InactivityTimeout.Duration(),
	}
}

// Defaults (see Config).
const (
	DefaultMaxWorkers             = 1024
	DefaultMaxHandshakes          = 256
	DefaultMaxHandshakesPerSource = 32
	DefaultMaxPendingConns        = 1024
	DefaultMaxSilentPerSource     = 64
)

func (c *Config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return conn.DefaultTimeout
}

func (c *Config) firstByteTimeout() time.Duration {
	if c.FirstByteTimeout > 0 {
		return c.FirstByteTimeout
	}
	return c.timeout()
}

func (c *Config) admission() admissionConfig {
	orDefault := func(v, d int) int {
		if v > 0 {
			return v
		}
		return d
	}
	return admissionConfig{
		maxPending:      orDefault(c.MaxPendingConns, DefaultMaxPendingConns),
		silentPerSource: orDefault(c.MaxSilentPerSource, DefaultMaxSilentPerSource),
		handshakes:      orDefault(c.MaxHandshakes, DefaultMaxHandshakes),
		perSourceHS:     orDefault(c.MaxHandshakesPerSource, DefaultMaxHandshakesPerSource),
		slotTimeout:     c.timeout(),
	}
}

func (c *Config) addr() string {
	host, port := c.BindAddr, c.Port
	if host == "" {
		host = config.DefaultBindAddr
		if c.Auth != nil {
			host = config.DefaultClientBindAddr
		}
	}
	switch port {
	case 0:
		port = config.DefaultPort
		if c.Auth != nil {
			port = config.DefaultClientPort
		}
	case -1:
		port = 0
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// checkPlaintext refuses a plaintext client port on a non-loopback
// address unless InsecurePlaintext says so.
func (c *Config) checkPlaintext() error {
	if c.InsecurePlaintext {
		return nil
	}
	host, _, err := net.SplitHostPort(c.addr())
	if err != nil {
		return err
	}
	if config.IsLoopback(host) {
		return nil
	}
	return ErrPlaintextClient
}

// connConfig resolves the per-connection configuration.
func (c *Config) connConfig(r conn.Router) (*conn.Config, error) {
	cert := c.Certificate
	cc := c.Conn
	if cert == nil {
		if c.CertFile == "" || c.KeyFile == "" {
			if c.Auth != nil {
				if err := c.checkPlaintext(); err != nil {
					return nil, err
				}
				cc.InsecurePlaintext = true
			}
			if !cc.InsecurePlaintext {
				return nil, ErrNoCertificate
			}
		} else {
			pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("server: loading rpc-cert-path/rpc-key-path: %w", err)
			}
			cert = &pair
		}
	}
	if !cc.InsecurePlaintext {
		if cc.TLS == nil {
			cc.TLS = conn.ServerTLS(*cert)
		} else {
			cc.TLS = cc.TLS.Clone()
			cc.TLS.Certificates = []tls.Certificate{*cert}
			// What conn would otherwise change in a clone per connection.
			cc.TLS.MinVersion = max(cc.TLS.MinVersion, tls.VersionTLS12)
			cc.TLS.DynamicRecordSizingDisabled = true
		}
	}
	cc.ClusterKey = c.ClusterKey
	cc.PlatformVersion = c.PlatformVersion
	if a := c.Auth; a != nil {
		cc.Authenticate = func(ctx context.Context, l conn.LoginRequest) (any, error) {
			return a.Login(ctx, l.Remote, l.Username, l.Password)
		}
	}
	cc.NodeID, cc.AppVersion = c.NodeID, c.AppVersion
	cc.Timeout = c.Timeout
	cc.InactivityTimeout = c.InactivityTimeout
	cc.Router = r
	if cc.PoolShare == 0 {
		workers := c.MaxWorkers
		if workers <= 0 {
			workers = DefaultMaxWorkers
		}
		cc.PoolShare = max(1, workers/8)
	}
	if cc.Logger == nil {
		cc.Logger = c.Logger
	}
	return &cc, nil
}
