package raftbench

import (
	"crypto/tls"
	"net"
	"time"

	hraft "github.com/hashicorp/raft"
)

// tlsStream is a raft StreamLayer over TLS as Consul and Vault run
// NetworkTransport: accepted connections come from a tls.Listener (the
// handshake runs on the first read, in the transport's connection
// goroutine), and Dial is a tls.Dialer with raft's dial timeout, which
// returns once the handshake is done. Both sides verify the other's
// certificate.
type tlsStream struct {
	net.Listener // a tls.Listener
	client       *tls.Config
}

var _ hraft.StreamLayer = (*tlsStream)(nil)

// listenTLS listens on a loopback port.
func listenTLS(c *creds) (*tlsStream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &tlsStream{Listener: tls.NewListener(ln, c.serverTLS), client: c.clientTLS}, nil
}

func (s *tlsStream) Dial(address hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.client}
	return d.Dial("tcp", string(address))
}
