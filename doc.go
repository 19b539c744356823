// Package hawser is the typed, user-facing face of the hawser RPC fabric:
// one definition of a method or stream shared by client and server
// (NewMethod, NewStream), payload codecs (raw []byte, the encoding Binary
// interfaces, and CBOR for other types, with an allowlist of the types
// that may be decoded at interface positions: RegisterType), call
// options, and the two error families every call can return.
//
// Errors: a *TransportError (errors.Is(err, ErrTransport)) means the call's
// connection failed, so the call may or may not have run; a *RemoteError
// (errors.Is(err, ErrRemote)) means the handler ran and returned an error,
// re-created here with its code, its registered name and its message, so
// that errors.Is works on sentinels registered with RegisterError on both
// sides.
//
// Retry rules (retry.go): a definition declared Idempotent, a stream
// declared Resubscribable, and a call that carries a RequestID (which a
// server deduplicates) tell a reconnecting client (client.Reconnecting)
// what it may send again after a lost connection; a call it may not send
// again fails with an error matching ErrMaybeExecuted.
//
// The wire format is in package codec and PROTOCOL.md; connections in conn;
// the server in server; the client side toward many peers in pool.
package hawser
