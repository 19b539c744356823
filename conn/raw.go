package conn

import (
	"context"
	"io"
	"net"
)

// DialRaw runs the dialer's side of TLS and the hawser handshake on nc,
// bounded by ctx and cfg.Timeout, and returns the established byte stream
// (inside TLS) without enrolling it on an event loop. It is for tools,
// tests and fuzzers that write frames themselves, such as a hostile peer;
// applications use Dial. The caller closes nc.
func DialRaw(ctx context.Context, nc net.Conn, cfg *Config) (io.ReadWriter, error) {
	rc, err := cfg.resolved(true)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, rc.Timeout)
	defer cancel()
	h, _, err := dialHandshake(ctx, rc, nc)
	if err != nil {
		return nil, timeoutCause(ctx, err)
	}
	return h.rw, nil
}
