// Package server serves hawser methods: a TCP listener whose accepted
// connections run TLS and the cluster-key handshake off the event loop and
// then live on gnet event loops; a registry of typed handlers (Handle,
// HandleStream) keyed by method ID, with collisions refused; a bounded
// worker pool for handlers, an inline mode for handlers that never block,
// an ordered mode that serves one connection's calls in arrival order; and
// graceful Shutdown.
//
// A handler's panic fails only its own call (CodeInternal). A handler error
// travels with its code, registered name and message (hawser.RegisterError)
// and is re-created on the caller.
//
// Configuration comes from Config, or from a node's YAML file through the
// config package (ConfigFromNode). The server refuses to start without a
// TLS certificate and key.
//
// This package is not the client side: dial peers with pool (many peers,
// reconnection) or conn.Dial (one connection).
package server
