package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
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
}

// Defaults of the keys.
const (
	DefaultBindAddr          = "0.0.0.0"
	DefaultPort              = 7911
	DefaultClientBindAddr    = "127.0.0.1"
	DefaultClientPort        = 7912
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
	return nil
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
