package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/hawser-rpc/hawser/pool"
	"github.com/hawser-rpc/hawser/server"
)

// Defaults of Config.
const (
	// DefaultTimeout bounds every RPC but heartbeats and each snapshot
	// chunk, as NetworkTransport's timeout does in Consul and Vault.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxPipeline is the AppendEntries calls in flight on one
	// pipeline: raft's own default (hashicorp/raft#541: deeper pipelines
	// make raft send smaller batches and lose throughput).
	DefaultMaxPipeline = 2
	// DefaultMaxPipelineBytes bounds the request bytes in flight on one
	// pipeline (raft's MaxAppendEntries, 64, entries of 64 KiB each).
	DefaultMaxPipelineBytes = 4 << 20
	// DefaultSnapshotChunk is the size of one snapshot chunk call.
	DefaultSnapshotChunk = 64<<10 - 64
	// DefaultSnapshotWindow bounds the snapshot bytes sent and not yet
	// taken by the follower's raft, per snapshot: the memory a snapshot
	// costs each side, whatever its size.
	DefaultSnapshotWindow = 1 << 20
)

// DefaultHeartbeatTimeout is half of raft's default HeartbeatTimeout: a
// heartbeat that has not come back by then is late enough for raft to try
// again before the follower's election timer runs out.
var DefaultHeartbeatTimeout = hraft.DefaultConfig().HeartbeatTimeout / 2

// ErrConfig reports an invalid Config.
var ErrConfig = errors.New("raft: invalid configuration")

// Config configures a Transport. Zero values mean the defaults.
type Config struct {
	// Server serves this node's raft RPCs: New registers the transport's
	// methods on it, so it must be called before Server.Serve (a
	// connection learns the served methods in its handshake). Required.
	Server *server.Server
	// Pool dials the other nodes, with the cluster key, backoff, parking and
	// gossip wake-up it has. It may be shared with other traffic: the
	// transport never closes it. Required.
	Pool *pool.Pool

	// LocalAddr is this node's raft address as peers dial it (host:port,
	// rpc-port). Default: the Server's listening address, read once it is
	// serving (so raft.NewRaft, which asks for it, must come after Serve).
	// Set it when the server listens on a wildcard address.
	LocalAddr hraft.ServerAddress
	// AddressProvider, if set, maps a raft ServerID to the address to dial
	// (from gossip metadata, for instance); when it fails, the address raft
	// gave is used, as NetworkTransport does.
	AddressProvider hraft.ServerAddressProvider

	// Timeout bounds each RPC but heartbeats: a vote, an AppendEntries,
	// the opening and the end of a snapshot, and each snapshot chunk
	// (progress: a snapshot may take as long as it needs while its chunks
	// keep moving). The follower also gives up on a snapshot whose next
	// chunk has not come for this long. Default 10 s.
	Timeout time.Duration
	// HeartbeatTimeout bounds a heartbeat call, which is sent and answered
	// ahead of bulk data. Default DefaultHeartbeatTimeout (half of raft's
	// HeartbeatTimeout).
	HeartbeatTimeout time.Duration

	// MaxPipeline bounds the AppendEntries calls in flight on one
	// pipeline, MaxPipelineBytes their encoded bytes (one request may
	// exceed it alone). Defaults 2 and 4 MiB; at least 1.
	MaxPipeline, MaxPipelineBytes int
	// SnapshotChunk is the snapshot bytes per chunk call (default 256 KiB,
	// 4 KiB … 4 MiB); SnapshotWindow the bytes sent and not yet taken by
	// the follower's raft (default 1 MiB, at least one chunk).
	SnapshotChunk, SnapshotWindow int

	// Logger receives the transport's events. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.Server == nil || cfg.Pool == nil {
		return cfg, fmt.Errorf("%w: Server and Pool are required", ErrConfig)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if cfg.MaxPipeline <= 0 {
		cfg.MaxPipeline = DefaultMaxPipeline
	}
	if cfg.MaxPipelineBytes <= 0 {
		cfg.MaxPipelineBytes = DefaultMaxPipelineBytes
	}
	if cfg.SnapshotChunk <= 0 {
		cfg.SnapshotChunk = DefaultSnapshotChunk
	}
	if cfg.SnapshotChunk < 4<<10 || cfg.SnapshotChunk > 4<<20 {
		return cfg, fmt.Errorf("%w: SnapshotChunk %d outside 4 KiB … 4 MiB", ErrConfig, cfg.SnapshotChunk)
	}
	if cfg.SnapshotWindow <= 0 {
		cfg.SnapshotWindow = DefaultSnapshotWindow
	}
	if cfg.SnapshotWindow < cfg.SnapshotChunk {
		return cfg, fmt.Errorf("%w: SnapshotWindow %d below one chunk (%d)", ErrConfig, cfg.SnapshotWindow, cfg.SnapshotChunk)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}
