package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hawser-rpc/hawser/config"
)

// Config configures a node. Zero values mean the defaults; the defaults of
// the protocol timers are hashicorp/memberlist's DefaultLANConfig, whose
// reasons still hold for a LAN.
type Config struct {
	// NodeID names this node (node-id), at most MaxIDLen bytes. Empty: the
	// ID saved in DataDir, else a new random one (saved if DataDir is set).
	NodeID string
	// ClusterName (cluster-name) is the additional data of every envelope:
	// nodes of clusters with different names drop each other's traffic
	// even if they share a key. Default "hawser".
	ClusterName string
	// ClusterKey (cluster-key) is the secret the packet key is derived
	// from, at least MinKeyLen bytes. Required unless Keyring is set.
	ClusterKey []byte
	// Keyring, if set, is used instead of ClusterKey; rotate keys on it
	// while the node runs.
	Keyring *Keyring
	// Meta is this node's metadata (roles, a Raft address...), at most
	// MaxMetaLen bytes; change it with UpdateMeta.
	Meta []byte
	// Seeds (seed-nodes) are addresses ("host:port", the RPC address) to
	// join through. New contacts them in the background, and again every
	// JoinRetryInterval while no other member is known.
	Seeds []string
	// DataDir (data-dir), if set, keeps the node ID and the last known
	// members, so a restarted node rejoins without seeds.
	DataDir string

	// ProbeInterval is the time between two probes of this node (Lifeguard
	// stretches it when the node is unhealthy). Default 1s.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a direct ping waits for its ack before
	// indirect probes start; about the 99th percentile of the RTT. Must be
	// less than ProbeInterval. Default 500ms.
	ProbeTimeout time.Duration
	// IndirectChecks is the number of members asked to probe a target that
	// missed its direct ping. Default 3.
	IndirectChecks int
	// SuspicionMult scales the minimum suspicion timeout:
	// SuspicionMult * max(1, log10(members)) * ProbeInterval. Default 4.
	SuspicionMult int
	// SuspicionMaxTimeoutMult is the ratio of the maximum suspicion
	// timeout (where a suspicion starts, Lifeguard) to the minimum (where
	// independent confirmations bring it). Default 6.
	SuspicionMaxTimeoutMult int
	// SuspicionConfirmations is the number of independent suspicions that
	// bring a suspicion timeout down to its minimum. Default
	// SuspicionMult-2 (memberlist's choice), at least 1.
	SuspicionConfirmations int
	// RetransmitMult bounds how often one change is piggybacked:
	// RetransmitMult * ceil(log10(members+1)) times. Default 4.
	RetransmitMult int
	// GossipInterval is the time between two rounds of gossip to
	// GossipNodes random members (only when there is something to tell).
	// Defaults 200ms and 3.
	GossipInterval time.Duration
	GossipNodes    int
	// GossipToTheDeadTime is how long dead members still receive gossip,
	// so a node wrongly declared dead learns it and refutes. Default 30s.
	GossipToTheDeadTime time.Duration
	// PushPullInterval is the time between two full-state syncs with a
	// random member over RPC; it grows with the cluster beyond 32 members
	// (as memberlist's). Default 30s; negative disables.
	PushPullInterval time.Duration
	// ReconnectInterval is the time between two attempts to reach a random
	// dead member (a ping that tells it it is dead), which is how a healed
	// partition finds its other side. Default 10s; negative disables.
	ReconnectInterval time.Duration
	// JoinRetryInterval is the time between two join attempts (Seeds and
	// saved members) while the node knows no other live member. Default 5s.
	JoinRetryInterval time.Duration
	// ExchangeTimeout bounds a push-pull exchange. Default 10s.
	ExchangeTimeout time.Duration
	// DeadRetention and LeftRetention are how long dead and left members
	// stay in the member list (and dead ones are retried). Defaults 24h
	// and 1h.
	DeadRetention, LeftRetention time.Duration
	// AwarenessMaxMultiplier bounds the Lifeguard health score: probe
	// interval and timeout are stretched up to this many times. Default 8.
	AwarenessMaxMultiplier int
	// MaxPacketSize is the largest datagram sent or accepted, envelope
	// included. Default 1400, range 1200 to 65000.
	MaxPacketSize int
	// EventBuffer is the default buffer of a subscription. Default 1024.
	EventBuffer int

	// DisableLifeguard turns off the Lifeguard refinements (health score,
	// nacks, dynamic suspicion timeouts, suspicions piggybacked on pings
	// to the suspect), leaving plain SWIM. For experiments.
	DisableLifeguard bool
	// DisableRPCFallback turns off the fallback probe over RPC.
	DisableRPCFallback bool

	// Clock is the time source; nil: the wall clock.
	Clock Clock
	// Seed seeds the node's random choices; 0: a random seed.
	Seed uint64
	// Logger receives rare events (joins failed, persistence errors); no
	// per-packet logging. Default slog.Default().
	Logger *slog.Logger
}

// Defaults (see Config).
const (
	DefaultClusterName             = "hawser"
	DefaultProbeInterval           = time.Second
	DefaultProbeTimeout            = 500 * time.Millisecond
	DefaultIndirectChecks          = 3
	DefaultSuspicionMult           = 4
	DefaultSuspicionMaxTimeoutMult = 6
	DefaultRetransmitMult          = 4
	DefaultGossipInterval          = 200 * time.Millisecond
	DefaultGossipNodes             = 3
	DefaultGossipToTheDeadTime     = 30 * time.Second
	DefaultPushPullInterval        = 30 * time.Second
	DefaultReconnectInterval       = 10 * time.Second
	DefaultJoinRetryInterval       = 5 * time.Second
	DefaultExchangeTimeout         = 10 * time.Second
	DefaultDeadRetention           = 24 * time.Hour
	DefaultLeftRetention           = time.Hour
	DefaultAwarenessMaxMultiplier  = 8
	DefaultMaxPacketSize           = 1400
	DefaultEventBuffer             = 1024
	MinPacketSize                  = 1200
	MaxPacketSize                  = 65000
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("gossip: invalid configuration")

// withDefaults returns c with defaults applied, or an error.
func (c Config) withDefaults() (Config, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(i *int, v int) {
		if *i == 0 {
			*i = v
		}
	}
	if c.ClusterName == "" {
		c.ClusterName = DefaultClusterName
	}
	def(&c.ProbeInterval, DefaultProbeInterval)
	def(&c.ProbeTimeout, DefaultProbeTimeout)
	defInt(&c.IndirectChecks, DefaultIndirectChecks)
	defInt(&c.SuspicionMult, DefaultSuspicionMult)
	defInt(&c.SuspicionMaxTimeoutMult, DefaultSuspicionMaxTimeoutMult)
	if c.SuspicionConfirmations == 0 {
		c.SuspicionConfirmations = max(c.SuspicionMult-2, 1)
	}
	defInt(&c.RetransmitMult, DefaultRetransmitMult)
	def(&c.GossipInterval, DefaultGossipInterval)
	defInt(&c.GossipNodes, DefaultGossipNodes)
	def(&c.GossipToTheDeadTime, DefaultGossipToTheDeadTime)
	def(&c.PushPullInterval, DefaultPushPullInterval)
	def(&c.ReconnectInterval, DefaultReconnectInterval)
	def(&c.JoinRetryInterval, DefaultJoinRetryInterval)
	def(&c.ExchangeTimeout, DefaultExchangeTimeout)
	def(&c.DeadRetention, DefaultDeadRetention)
	def(&c.LeftRetention, DefaultLeftRetention)
	defInt(&c.AwarenessMaxMultiplier, DefaultAwarenessMaxMultiplier)
	defInt(&c.MaxPacketSize, DefaultMaxPacketSize)
	defInt(&c.EventBuffer, DefaultEventBuffer)
	if c.Clock == nil {
		c.Clock = RealClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case len(c.NodeID) > MaxIDLen:
		return c, fmt.Errorf("%w: node ID longer than %d bytes", ErrConfig, MaxIDLen)
	case len(c.ClusterName) > 255:
		return c, fmt.Errorf("%w: cluster name longer than 255 bytes", ErrConfig)
	case len(c.Meta) > MaxMetaLen:
		return c, fmt.Errorf("%w: meta longer than %d bytes", ErrConfig, MaxMetaLen)
	case c.Keyring == nil && len(c.ClusterKey) < MinKeyLen:
		return c, fmt.Errorf("%w: a cluster key of at least %d bytes (or a Keyring) is required", ErrConfig, MinKeyLen)
	case c.ProbeInterval < 0 || c.ProbeTimeout < 0 || c.ProbeTimeout >= c.ProbeInterval:
		return c, fmt.Errorf("%w: the probe timeout must be positive and less than the probe interval", ErrConfig)
	case c.GossipInterval < 0 || c.ExchangeTimeout < 0 || c.GossipToTheDeadTime < 0 ||
		c.JoinRetryInterval < 0 || c.DeadRetention < 0 || c.LeftRetention < 0:
		return c, fmt.Errorf("%w: negative interval", ErrConfig)
	case c.IndirectChecks < 0 || c.SuspicionMult < 1 || c.SuspicionMaxTimeoutMult < 1 ||
		c.SuspicionConfirmations < 1 || c.RetransmitMult < 1 || c.GossipNodes < 1 ||
		c.AwarenessMaxMultiplier < 1 || c.EventBuffer < 1:
		return c, fmt.Errorf("%w: multipliers and counts must be positive", ErrConfig)
	case c.MaxPacketSize < MinPacketSize || c.MaxPacketSize > MaxPacketSize:
		return c, fmt.Errorf("%w: packet size %d out of [%d, %d]", ErrConfig, c.MaxPacketSize, MinPacketSize, MaxPacketSize)
	}
	return c, nil
}

// ConfigFromNode builds a Config from a node's configuration file:
// node-id, cluster-name, cluster-key, seed-nodes (a seed without a port
// gets rpc-port), data-dir and the gossip-* tuning keys.
func ConfigFromNode(n config.Node) Config {
	n = n.WithDefaults()
	seeds := make([]string, 0, len(n.SeedNodes))
	for _, s := range n.SeedNodes {
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(s, strconv.Itoa(n.Port))
		}
		seeds = append(seeds, s)
	}
	return Config{
		NodeID:           n.NodeID,
		ClusterName:      n.ClusterName,
		ClusterKey:       []byte(n.ClusterKey),
		Seeds:            seeds,
		DataDir:          n.DataDir,
		ProbeInterval:    n.GossipProbeInterval.Duration(),
		ProbeTimeout:     n.GossipProbeTimeout.Duration(),
		GossipInterval:   n.GossipInterval.Duration(),
		PushPullInterval: n.GossipPushPullInterval.Duration(),
		MaxPacketSize:    n.GossipPacketSize,
	}
}
