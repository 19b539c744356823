package conn

import (
	"errors"
	"fmt"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
)

// Handshake and connection errors. Dial returns them wrapped in a
// *hawser.TransportError; pending calls fail with a *hawser.TransportError
// whose cause is one of them or the socket error.
var (
	// ErrAuth: a side failed to prove it holds the cluster key.
	ErrAuth = errors.New("conn: cluster-key authentication failed")
	// ErrVersionMismatch: the two sides share no protocol version; the
	// error text carries both ranges.
	ErrVersionMismatch = errors.New("conn: no common protocol version")
	// ErrHandshake: the peer broke the handshake or is not a hawser peer.
	ErrHandshake = errors.New("conn: handshake failed")
	// ErrClosed: the connection was closed locally.
	ErrClosed = errors.New("conn: connection closed")
	// ErrPeerClosed: the peer closed the connection.
	ErrPeerClosed = errors.New("conn: connection closed by peer")
	// ErrTruncated: the peer closed the connection in the middle of a frame.
	ErrTruncated = fmt.Errorf("%w in the middle of a frame", ErrPeerClosed)
	// ErrKeepalive: the peer did not answer a PING in time.
	ErrKeepalive = errors.New("conn: keepalive timeout")
	// ErrIdle: the connection was closed after the inactivity timeout.
	ErrIdle = errors.New("conn: closed after inactivity timeout")
	// ErrGoAway: the connection is draining; start new calls elsewhere.
	ErrGoAway = errors.New("conn: connection is going away")
	// ErrUnknownMethod: the peer's HELLO_ACK does not list the method, so
	// the call fails without a round trip.
	ErrUnknownMethod = errors.New("conn: method not served by the peer")
	// ErrSlowReader: the peer did not read what this side sent: its
	// unprocessed input passed MaxInputBacklog while its output waited, or
	// nothing could be written to it for WriteStallTimeout (PROTOCOL.md §9).
	ErrSlowReader = errors.New("conn: peer does not read")
	// ErrMessageTooLarge: a payload exceeds the peer's maximum message size.
	ErrMessageTooLarge = errors.New("conn: message exceeds the peer's maximum message size")
)

// PeerError is a connection-level error announced by the peer in a GOAWAY
// before it closed the connection.
type PeerError struct {
	Code    codec.Code
	Name    string // a registered error name, if the peer sent one
	Message string
}

// Unwrap returns the sentinel registered (hawser.RegisterError) under the
// peer's error name, if any: errors.Is(err, hawser.ErrLoginFailed).
func (e *PeerError) Unwrap() error {
	if e.Name == "" {
		return nil
	}
	return hawser.NewRemoteError(e.Code, e.Name, e.Message).Unwrap()
}

func (e *PeerError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("conn: peer closed the connection: %s", e.Code)
	}
	return fmt.Sprintf("conn: peer closed the connection: %s: %s", e.Code, e.Message)
}

// Is maps the peer's code to this package's sentinels.
func (e *PeerError) Is(target error) bool {
	switch e.Code {
	case codec.CodeUnauthenticated:
		return target == ErrAuth
	case codec.CodeVersionMismatch:
		return target == ErrVersionMismatch
	case codec.CodeKeepalive:
		return target == ErrKeepalive
	case codec.CodeIdle:
		return target == ErrIdle
	case codec.CodeSlowReader:
		return target == ErrSlowReader
	case codec.CodeProtocol, codec.CodeFrameTooLarge, codec.CodeMessageTooLarge:
		return target == codec.ErrProtocol
	}
	return false
}
