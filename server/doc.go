// Package server serves hawser methods: a TCP listener whose accepted
// connections run TLS and the cluster-key handshake off the event loop and
// then live on gnet event loops; a registry of typed handlers (Handle,
// HandleStream) keyed by method ID, with collisions refused; a bounded
// worker pool for handlers, an inline mode for handlers that never block,
// an ordered mode that serves one connection's calls in arrival order; and
// graceful Shutdown.
//
// Admission (admit.go) bounds what connections cost before they
// authenticate: a connection that has sent nothing holds no handshake slot
// and is the first closed to admit another, so a flood of silent
// connections cannot lock legitimate peers out; the handshake slots are
// bounded in all and per source address, and waited for rather than
// refused. Shutdown sees every connection that was enrolled (it waits for
// the handshakes it aborts), lets the replies of calls in flight reach the
// socket, and returns by its context's deadline; Close and Shutdown wait
// for stream and ordered handlers, which run on goroutines the server owns
// (conn.Router.Go). One connection's pool-mode calls run on at most
// MaxWorkers/8 workers at once (conn.Config.PoolShare).
//
// A unary call or a flow start that carries a request ID
// (hawser.WithRequestID) runs at most once per user and method while the
// request-ID table keeps its outcome (dedup.go, Config.Dedup, PROTOCOL.md
// §5.4.1); the table is in memory and does not survive a restart.
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
