// Package impl adapts each RPC implementation the benchmark compares to one
// interface: a server that echoes unary calls and pushes stream items, and
// a client that makes those calls. Every implementation runs over TLS with
// the certificate the runner generates.
package impl

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"
)

// ServerConfig is what a server needs.
type ServerConfig struct {
	Addr       string // host:port, port 0 for any
	Cert       tls.Certificate
	ClusterKey []byte // hawser only
}

// ClientConfig is what a client needs.
type ClientConfig struct {
	Addr       string
	Conns      int // connections to open (implementations that multiplex)
	Conc       int // concurrent callers (raw opens one connection each)
	ClusterKey []byte
}

// Server is a running benchmark server.
type Server interface {
	Addr() string
	Close() error
}

// Client makes benchmark calls; safe for concurrent use.
type Client interface {
	// Unary sends req and returns the echoed reply.
	Unary(ctx context.Context, req []byte) ([]byte, error)
	// Stream receives items of size bytes until ctx ends, calling onItem
	// for each; the item's first 8 bytes are the server's send time in
	// Unix nanoseconds when size >= 8.
	Stream(ctx context.Context, size int, onItem func(item []byte)) error
	Close() error
}

// Impl is one implementation.
type Impl struct {
	Name    string
	Streams bool // supports the stream scenario
	Serve   func(ServerConfig) (Server, error)
	Dial    func(ClientConfig) (Client, error)
}

var registry = map[string]Impl{}

func register(i Impl) { registry[i.Name] = i }

// Get returns the implementation called name.
func Get(name string) (Impl, error) {
	i, ok := registry[name]
	if !ok {
		return Impl{}, fmt.Errorf("unknown implementation %q (have %v)", name, Names())
	}
	return i, nil
}

// Names lists the implementations.
func Names() []string {
	var out []string
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ErrNoStreams is returned by Stream on implementations without streams.
var ErrNoStreams = errors.New("impl: no server streaming")

// streamItem fills item with the current time (when it fits).
func streamItem(item []byte) {
	if len(item) >= 8 {
		binary.BigEndian.PutUint64(item, uint64(time.Now().UnixNano()))
	}
}

// clientTLS accepts the runner's self-signed certificate: the benchmark
// measures transport cost, and every implementation skips verification
// alike.
func clientTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} // #nosec: benchmark only
}

func serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
}
