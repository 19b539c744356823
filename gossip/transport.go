package gossip

import (
	"errors"
	"time"
)

// Transport carries gossip's traffic: best-effort datagrams (probes and
// dissemination) and reliable request/response exchanges (push-pull state
// sync and the fallback probe). The payloads are already sealed; a
// transport neither reads nor changes them. UDPTransport is the production
// implementation (UDP on the RPC port, exchanges as hawser RPC calls);
// MemTransport is the simulated one.
type Transport interface {
	// Start begins delivering incoming datagrams and requests to h. It is
	// called once, by New.
	Start(h Handler) error
	// Addr is the address ("host:port") other members reach this node at:
	// the same for datagrams and exchanges. Valid after Start.
	Addr() string
	// WritePacket sends one datagram. It must not block for long and must
	// not call the Handler. b is valid only during the call.
	WritePacket(addr string, b []byte) error
	// Call sends req to addr's Handler.HandleRequest and calls done with
	// the response, or an error, within about timeout. If Call returns an
	// error, done is never called; otherwise done is called at most once,
	// never before Call returns, and not at all once Close has returned.
	// req is valid only during Call; the response only during done.
	Call(addr string, req []byte, timeout time.Duration, done func(resp []byte, err error)) error
	// Close stops delivery. When it returns no Handler method or done
	// callback is running, and none will run.
	Close() error
}

// ConnectedTransport is a Transport that knows what an exchange costs:
// Connected reports whether an exchange with addr would go over a
// connection open now, so that it needs no dial and no handshake. It is
// called with the node's lock held: it must be quick, must not block and
// must not call the Handler. Gossip holds back a fallback probe that would
// dial (see PROTOCOL.md §5.1); with a Transport that does not implement
// it, every exchange counts as cheap. UDPTransport implements it.
type ConnectedTransport interface {
	Transport
	Connected(addr string) bool
}

// Handler receives a transport's traffic. Its methods may be called
// concurrently.
type Handler interface {
	// HandlePacket handles one datagram; b is valid only during the call.
	HandlePacket(from string, b []byte)
	// HandleRequest answers one exchange; req is valid only during the
	// call, and the response belongs to the transport.
	HandleRequest(req []byte) ([]byte, error)
}

// Transport errors.
var (
	ErrTransportClosed = errors.New("gossip: transport closed")
	ErrCallTimeout     = errors.New("gossip: exchange timed out")
	ErrUnreachable     = errors.New("gossip: address unreachable")
	ErrBusy            = errors.New("gossip: too many exchanges in flight")
)
