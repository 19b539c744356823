package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hawser-rpc/hawser/auth"
)

// Millis is a duration written in the file as whole milliseconds.
type Millis int64

// Duration converts m.
func (m Millis) Duration() time.Duration { return time.Duration(m) * time.Millisecond }

// Node is a node's RPC configuration. Zero values mean the defaults below.
type Node struct {
	// BindAddr is the address the RPC (TCP) and gossip (UDP) listeners bind.
	BindAddr string `yaml:"rpc-bind-addr"`
	// Port is the TCP port of RPC and the UDP port of gossip.
	Port int `yaml:"rpc-port"`
	// CertPath and KeyPath name the PEM certificate and key; RPC refuses to
	// start without them.
	CertPath string `yaml:"rpc-cert-path"`
	KeyPath  string `yaml:"rpc-key-path"`
	// TLSDomain is the name peers' certificates must be valid for; empty
	// accepts self-signed peers (the cluster key still authenticates them).
	TLSDomain string `yaml:"rpc-tls-domain"`
	// CAPath optionally names PEM roots for TLSDomain verification (default:
	// the system roots).
	CAPath string `yaml:"rpc-ca-path"`
	// InactivityTimeout closes a connection idle this long.
	InactivityTimeout Millis `yaml:"rpc-inactivity-timeout"`
	// Timeout bounds connect + TLS + authentication.
	Timeout Millis `yaml:"rpc-timeout"`
	// RetriesMax is how many reconnection attempts a peer gets before it is
	// parked until gossip confirms it alive.
	RetriesMax int `yaml:"rpc-retries-max"`
	// BackoffMax caps the truncated exponential backoff between attempts.
	BackoffMax Millis `yaml:"rpc-backoff-max"`
	// ClusterKey is the cluster's shared secret (at least 16 bytes).
	ClusterKey string `yaml:"cluster-key"`
	// NodeID names this node to its peers.
	NodeID string `yaml:"node-id"`

	// ClusterName is bound into every gossip packet: nodes of clusters with
	// different names ignore each other even if they share a key.
	ClusterName string `yaml:"cluster-name"`
	// SeedNodes are RPC addresses ("host:port", or "host" for rpc-port) a
	// node joins the cluster through.
	SeedNodes []string `yaml:"seed-nodes"`
	// DataDir, if set, is where gossip keeps the node ID and the last known
	// members, so a restarted node rejoins without seeds.
	DataDir string `yaml:"data-dir"`
	// GossipAdvertiseAddr is the address ("host" or "host:port") other
	// members reach this node at, for RPC and gossip alike; empty:
	// rpc-bind-addr, or a private address of the host when that is
	// unspecified (0.0.0.0).
	GossipAdvertiseAddr string `yaml:"gossip-advertise-addr"`
	// GossipProbeInterval is the time between two failure-detection probes.
	GossipProbeInterval Millis `yaml:"gossip-probe-interval"`
	// GossipProbeTimeout is how long a direct probe waits for its answer;
	// less than GossipProbeInterval.
	GossipProbeTimeout Millis `yaml:"gossip-probe-timeout"`
	// GossipInterval is the time between two rounds of gossip.
	GossipInterval Millis `yaml:"gossip-interval"`
	// GossipPushPullInterval is the time between two full-state syncs with
	// a random member (over RPC).
	GossipPushPullInterval Millis `yaml:"gossip-push-pull-interval"`
	// GossipPacketSize is the largest gossip datagram, in bytes.
	GossipPacketSize int `yaml:"gossip-packet-size"`

	// Client RPC (applications and operators, who log in as users). The
	// client port is served when rpc-users or security is set.

	// ClientBindAddr and ClientPort are where the client port listens.
	ClientBindAddr string `yaml:"client-rpc-bind-addr"`
	ClientPort     int    `yaml:"client-rpc-port"`
	// ClientCertPath and ClientKeyPath turn TLS on for the client port
	// (off by default, as in Corda).
	ClientCertPath string `yaml:"client-rpc-cert-path"`
	ClientKeyPath  string `yaml:"client-rpc-key-path"`
	// ClientInsecurePlaintext allows a client port without TLS on a
	// non-loopback address, where passwords cross the network in clear.
	ClientInsecurePlaintext bool `yaml:"client-rpc-insecure-plaintext"`
	// ClientTimeout bounds TLS and the login of a client connection: a
	// password hash takes tens of milliseconds, and logins wait for one of
	// GOMAXPROCS hash slots, so it is longer than rpc-timeout.
	ClientTimeout Millis `yaml:"client-rpc-timeout"`
	// ClientLoginLimit bounds failed logins per source address.
	ClientLoginLimit LoginLimit `yaml:"client-rpc-login-limit"`
	// ClientObservables bounds what one client connection's observables
	// and futures may hold on the server (server.ObservableConfig).
	ClientObservables Observables `yaml:"client-rpc-observables"`
	// ClientDedup bounds the table of request IDs that makes a call with
	// a client-chosen ID run at most once (server.DedupConfig).
	ClientDedup Dedup `yaml:"client-rpc-dedup"`
	// RPCUsers is a static list of users with plain passwords (Corda's
	// rpcUsers). It excludes Security.
	RPCUsers []User `yaml:"rpc-users"`
	// Security is Corda's security block: the users' data source.
	Security *Security `yaml:"security"`
}

// User is one user of rpc-users or of an INMEMORY data source.
type User struct {
	Username    string   `yaml:"username"`
	Password    string   `yaml:"password"`
	Permissions []string `yaml:"permissions"`
}

// LoginLimit is client-rpc-login-limit: after Failures failed logins from
// one address within Window, logins from it are refused for Lockout.
type LoginLimit struct {
	Failures int    `yaml:"failures"` // default 10; -1 disables
	Window   Millis `yaml:"window"`   // default 60000
	Lockout  Millis `yaml:"lockout"`  // default 60000
}

// Observables is client-rpc-observables. Zero values mean the server's
// defaults.
type Observables struct {
	// BufferBytes bounds, per client connection, the items produced and
	// not yet taken. Default 8388608 (8 MiB).
	BufferBytes int `yaml:"buffer-bytes"`
	// Overflow is what happens when that buffer is full, for observables
	// that leave it to the server: "kick" (the default: the client is
	// disconnected with GOAWAY hawser.SlowConsumer) or "block" (the
	// producer waits for the client).
	Overflow string `yaml:"overflow"`
	// MaxSubscriptions bounds the observables and futures one connection
	// holds at once. Default 1024.
	MaxSubscriptions int `yaml:"max-subscriptions"`
}

// Overflow policies of client-rpc-observables.overflow.
const (
	OverflowKick  = "kick"
	OverflowBlock = "block"
)

// Dedup is client-rpc-dedup. Zero values mean the server's defaults.
type Dedup struct {
	// Window is how long, in ms, an outcome is kept after its call
	// completed. Default 600000 (10 minutes); -1 turns deduplication off.
	Window Millis `yaml:"window"`
	// MaxEntries bounds the outcomes kept. Default 10000.
	MaxEntries int `yaml:"max-entries"`
	// MaxReplyBytes bounds one kept reply. Default 65536.
	MaxReplyBytes int `yaml:"max-reply-bytes"`
	// MaxBytes bounds all kept outcomes. Default 67108864 (64 MiB).
	MaxBytes int `yaml:"max-bytes"`
}

// Security is the security block (Corda's security.authService).
type Security struct {
	AuthService AuthService `yaml:"auth-service"`
}

// AuthService is security.auth-service.
type AuthService struct {
	DataSource DataSource  `yaml:"data-source"`
	Options    AuthOptions `yaml:"options"`
}

// DataSource is security.auth-service.data-source.
type DataSource struct {
	// Type is INMEMORY (Users) or DB (Connection).
	Type string `yaml:"type"`
	// PasswordEncryption is NONE (default), SHIRO_1_CRYPT or ARGON2ID.
	PasswordEncryption string `yaml:"password-encryption"`
	// Users are an INMEMORY source's users.
	Users []User `yaml:"users"`
	// Connection is a DB source's database.
	Connection *Connection `yaml:"connection"`
}

// Connection names a database/sql driver and its data source name. The
// driver must be linked into the program: import
// github.com/hawser-rpc/hawser/drivers for "sqlite" and "pgx".
type Connection struct {
	Driver string `yaml:"driver"`
	DSN    string `yaml:"dsn"`
}

// AuthOptions is security.auth-service.options.
type AuthOptions struct {
	Cache *Cache `yaml:"cache"`
}

// Cache is options.cache: no cache unless set.
type Cache struct {
	ExpireAfterSecs int `yaml:"expire-after-secs"`
	MaxEntries      int `yaml:"max-entries"`
}

// Data source types.
const (
	DataSourceInMemory = "INMEMORY"
	DataSourceDB       = "DB"
)

// ClientEnabled reports whether the node serves a client port.
func (n Node) ClientEnabled() bool { return len(n.RPCUsers) > 0 || n.Security != nil }

// Defaults of the keys.
const (
	DefaultBindAddr          = "0.0.0.0"
	DefaultPort              = 7911
	DefaultClientBindAddr    = "127.0.0.1"
	DefaultClientPort        = 7912
	DefaultClientTimeout     = Millis(5000)
	DefaultLoginFailures     = 10
	DefaultLoginWindow       = Millis(60000)
	DefaultLoginLockout      = Millis(60000)
	DefaultInactivityTimeout = Millis(300000)
	DefaultTimeout           = Millis(1000)
	DefaultRetriesMax        = 5
	DefaultBackoffMax        = Millis(180000)

	DefaultClusterName            = "hawser"
	DefaultGossipProbeInterval    = Millis(1000)
	DefaultGossipProbeTimeout     = Millis(500)
	DefaultGossipInterval         = Millis(200)
	DefaultGossipPushPullInterval = Millis(30000)
	DefaultGossipPacketSize       = 1400
	// MinGossipPacketSize and MaxGossipPacketSize bound gossip-packet-size.
	MinGossipPacketSize = 1200
	MaxGossipPacketSize = 65000
)

// WithDefaults returns n with every unset key at its default.
func (n Node) WithDefaults() Node {
	if n.BindAddr == "" {
		n.BindAddr = DefaultBindAddr
	}
	if n.Port == 0 {
		n.Port = DefaultPort
	}
	if n.InactivityTimeout == 0 {
		n.InactivityTimeout = DefaultInactivityTimeout
	}
	if n.Timeout == 0 {
		n.Timeout = DefaultTimeout
	}
	if n.RetriesMax == 0 {
		n.RetriesMax = DefaultRetriesMax
	}
	if n.BackoffMax == 0 {
		n.BackoffMax = DefaultBackoffMax
	}
	if n.ClusterName == "" {
		n.ClusterName = DefaultClusterName
	}
	if n.GossipProbeInterval == 0 {
		n.GossipProbeInterval = DefaultGossipProbeInterval
	}
	if n.GossipProbeTimeout == 0 {
		n.GossipProbeTimeout = DefaultGossipProbeTimeout
	}
	if n.GossipInterval == 0 {
		n.GossipInterval = DefaultGossipInterval
	}
	if n.GossipPushPullInterval == 0 {
		n.GossipPushPullInterval = DefaultGossipPushPullInterval
	}
	if n.GossipPacketSize == 0 {
		n.GossipPacketSize = DefaultGossipPacketSize
	}
	if n.ClientBindAddr == "" {
		n.ClientBindAddr = DefaultClientBindAddr
	}
	if n.ClientPort == 0 {
		n.ClientPort = DefaultClientPort
	}
	if n.ClientTimeout == 0 {
		n.ClientTimeout = DefaultClientTimeout
	}
	if n.ClientLoginLimit.Failures == 0 {
		n.ClientLoginLimit.Failures = DefaultLoginFailures
	}
	if n.ClientLoginLimit.Window == 0 {
		n.ClientLoginLimit.Window = DefaultLoginWindow
	}
	if n.ClientLoginLimit.Lockout == 0 {
		n.ClientLoginLimit.Lockout = DefaultLoginLockout
	}
	return n
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("config: invalid")

// Validate checks ranges (on a Node with defaults applied).
func (n Node) Validate() error {
	switch {
	case n.Port < 0 || n.Port > 65535:
		return fmt.Errorf("%w: rpc-port %d out of range", ErrInvalid, n.Port)
	case n.Timeout < 0:
		return fmt.Errorf("%w: rpc-timeout must be positive", ErrInvalid)
	case n.RetriesMax < 0:
		return fmt.Errorf("%w: rpc-retries-max must not be negative", ErrInvalid)
	case n.BackoffMax < 0:
		return fmt.Errorf("%w: rpc-backoff-max must not be negative", ErrInvalid)
	case n.ClusterKey != "" && len(n.ClusterKey) < 16:
		return fmt.Errorf("%w: cluster-key must be at least 16 bytes", ErrInvalid)
	case len(n.ClusterName) > 255:
		return fmt.Errorf("%w: cluster-name longer than 255 bytes", ErrInvalid)
	case n.GossipProbeInterval < 0 || n.GossipProbeTimeout < 0 || n.GossipInterval < 0 || n.GossipPushPullInterval < 0:
		return fmt.Errorf("%w: gossip intervals must not be negative", ErrInvalid)
	case n.GossipProbeTimeout >= n.GossipProbeInterval:
		return fmt.Errorf("%w: gossip-probe-timeout must be less than gossip-probe-interval", ErrInvalid)
	case n.GossipPacketSize < MinGossipPacketSize || n.GossipPacketSize > MaxGossipPacketSize:
		return fmt.Errorf("%w: gossip-packet-size %d out of [%d, %d]", ErrInvalid, n.GossipPacketSize, MinGossipPacketSize, MaxGossipPacketSize)
	}
	for _, s := range n.SeedNodes {
		if err := checkHostPort(s); err != nil {
			return fmt.Errorf("%w: seed-nodes: %q: %w", ErrInvalid, s, err)
		}
	}
	if n.GossipAdvertiseAddr != "" {
		if err := checkHostPort(n.GossipAdvertiseAddr); err != nil {
			return fmt.Errorf("%w: gossip-advertise-addr: %q: %w", ErrInvalid, n.GossipAdvertiseAddr, err)
		}
	}
	return n.validateClient()
}

// validateClient checks the client RPC keys: the users' source, the
// permission strings, and TLS off loopback.
func (n Node) validateClient() error {
	switch {
	case n.ClientPort < 0 || n.ClientPort > 65535:
		return fmt.Errorf("%w: client-rpc-port %d out of range", ErrInvalid, n.ClientPort)
	case n.ClientEnabled() && n.ClientPort == n.Port && sameHost(n.ClientBindAddr, n.BindAddr):
		return fmt.Errorf("%w: client-rpc-port and rpc-port are both %d on the same address", ErrInvalid, n.Port)
	case n.ClientTimeout < 0:
		return fmt.Errorf("%w: client-rpc-timeout must be positive", ErrInvalid)
	case (n.ClientCertPath == "") != (n.ClientKeyPath == ""):
		return fmt.Errorf("%w: client-rpc-cert-path and client-rpc-key-path go together", ErrInvalid)
	case n.ClientLoginLimit.Failures < -1 || n.ClientLoginLimit.Window < 0 || n.ClientLoginLimit.Lockout < 0:
		return fmt.Errorf("%w: client-rpc-login-limit: failures must be positive (or -1 to disable), window and lockout not negative", ErrInvalid)
	case n.ClientObservables.BufferBytes < 0 || n.ClientObservables.MaxSubscriptions < 0:
		return fmt.Errorf("%w: client-rpc-observables: buffer-bytes and max-subscriptions must not be negative", ErrInvalid)
	case n.ClientObservables.Overflow != "" && !strings.EqualFold(n.ClientObservables.Overflow, OverflowKick) &&
		!strings.EqualFold(n.ClientObservables.Overflow, OverflowBlock):
		return fmt.Errorf("%w: client-rpc-observables.overflow %q: want kick or block", ErrInvalid, n.ClientObservables.Overflow)
	case n.ClientDedup.Window < -1 || n.ClientDedup.MaxEntries < 0 || n.ClientDedup.MaxReplyBytes < 0 || n.ClientDedup.MaxBytes < 0:
		return fmt.Errorf("%w: client-rpc-dedup: window must be positive (or -1 to disable), the bounds not negative", ErrInvalid)
	case len(n.RPCUsers) > 0 && n.Security != nil:
		return fmt.Errorf("%w: rpc-users and security are both set: a node takes its users from one of them (Corda's rule); move the rpc-users into security.auth-service.data-source (type: INMEMORY) or drop the security block", ErrInvalid)
	}
	if n.ClientEnabled() && n.ClientCertPath == "" && !n.ClientInsecurePlaintext && !IsLoopback(n.ClientBindAddr) {
		return fmt.Errorf("%w: client-rpc-bind-addr %s is not a loopback address and the client port has no TLS: "+
			"passwords would cross the network in clear. Set client-rpc-cert-path and client-rpc-key-path, "+
			"bind it to 127.0.0.1, or set client-rpc-insecure-plaintext: true on a trusted network", ErrInvalid, n.ClientBindAddr)
	}
	if err := checkUsers("rpc-users", n.RPCUsers); err != nil {
		return err
	}
	if n.Security == nil {
		return nil
	}
	ds := n.Security.AuthService.DataSource
	const where = "security.auth-service.data-source"
	if _, err := auth.ParseEncryption(ds.PasswordEncryption); err != nil {
		return fmt.Errorf("%w: %s.password-encryption: %w", ErrInvalid, where, err)
	}
	switch strings.ToUpper(ds.Type) {
	case DataSourceInMemory:
		if ds.Connection != nil {
			return fmt.Errorf("%w: %s: an INMEMORY source takes users, not a connection", ErrInvalid, where)
		}
		if err := checkUsers(where+".users", ds.Users); err != nil {
			return err
		}
	case DataSourceDB:
		if len(ds.Users) > 0 {
			return fmt.Errorf("%w: %s: a DB source reads its users from the database; users is for type INMEMORY", ErrInvalid, where)
		}
		if ds.Connection == nil || ds.Connection.Driver == "" || ds.Connection.DSN == "" {
			return fmt.Errorf("%w: %s: a DB source needs connection.driver and connection.dsn", ErrInvalid, where)
		}
	default:
		return fmt.Errorf("%w: %s.type %q: want INMEMORY or DB", ErrInvalid, where, ds.Type)
	}
	if c := n.Security.AuthService.Options.Cache; c != nil && (c.ExpireAfterSecs <= 0 || c.MaxEntries < 0) {
		return fmt.Errorf("%w: security.auth-service.options.cache: expire-after-secs must be positive and max-entries not negative", ErrInvalid)
	}
	return nil
}

// checkUsers checks names and permission strings: a malformed permission
// is a startup error, not a permission that never matches.
func checkUsers(where string, users []User) error {
	seen := map[string]bool{}
	for i, u := range users {
		if u.Username == "" {
			return fmt.Errorf("%w: %s[%d]: empty username", ErrInvalid, where, i)
		}
		if seen[u.Username] {
			return fmt.Errorf("%w: %s: user %q listed twice", ErrInvalid, where, u.Username)
		}
		seen[u.Username] = true
		for _, p := range u.Permissions {
			if _, err := auth.ParsePermission(p); err != nil {
				return fmt.Errorf("%w: %s: user %q: %w", ErrInvalid, where, u.Username, err)
			}
		}
	}
	return nil
}

// IsLoopback reports whether host is "localhost" or a loopback IP address:
// where a client port may run without TLS.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func sameHost(a, b string) bool {
	unspecified := func(h string) bool { ip, err := netip.ParseAddr(h); return err == nil && ip.IsUnspecified() }
	return a == b || unspecified(a) || unspecified(b)
}

// checkHostPort accepts "host" and "host:port" with a port in 1-65535.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil { // no port: all of s is the host
		host = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		if host == "" || strings.ContainsAny(host, " /[]") {
			return errors.New("bad host")
		}
		return nil
	}
	if host == "" || strings.ContainsAny(host, " /") {
		return errors.New("bad host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return errors.New("bad port")
	}
	return nil
}

// Parse decodes YAML strictly, applies defaults and validates.
func Parse(data []byte) (Node, error) {
	var n Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&n); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file
		return Node{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	n = n.WithDefaults()
	return n, n.Validate()
}

// Load reads and parses a file.
func Load(path string) (Node, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Node{}, err
	}
	n, err := Parse(data)
	if err != nil {
		return Node{}, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}
