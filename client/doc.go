// Package client is hawser's client RPC library (after Corda's
// CordaRPCClient): applications and operators connect to a node's client
// port (client-rpc-port, default 7912) as a user with a password, not
// with the cluster key, and call the methods, streams and flows the
// node's client server registered, within the user's permissions.
//
//	c, err := client.Start(ctx, "node1:7912", "alice", password,
//		client.WithCA(roots, "node1"))
//	if err != nil { ... }
//	defer c.Close()
//	v, err := getMethod.Call(ctx, c, key) // a *hawser.Method, as through a pool peer
//
// A Conn is one multiplexed connection: expensive to make (TCP, TLS, a
// password hash on the server), cheap to use, safe for many goroutines with
// many calls in flight. Make one and reuse it.
//
// StartReconnecting returns a *Reconnecting instead (after Corda's
// ReconnectingCordaRPCOps): a Caller that logs in again with backoff when
// its connection is lost, sends a call again only when that cannot run it
// twice (hawser.Idempotent, never sent, or a request ID the same server
// still deduplicates; otherwise a *MaybeExecutedError), and re-opens
// hawser.Resubscribable streams, whose readers get hawser.ErrResubscribed.
//
// Errors: a failure of the connection is a *hawser.TransportError
// (hawser.ErrTransport, like Corda's RPCException); a refused login
// matches hawser.ErrLoginFailed (the same for an unknown user and a wrong
// password) or hawser.ErrLoginLimited; a call the user may not make
// matches hawser.ErrPermissionDenied; a method declared hawser.Since a
// later platform version than the server's, or a server older than
// MinimumPlatformVersion, matches hawser.ErrUnsupported; a handler's own
// registered errors are re-created (errors.Is).
package client
