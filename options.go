package hawser

import "github.com/hawser-rpc/hawser/codec"

// CallOptions are the per-call settings a CallOption changes.
type CallOptions struct {
	// Urgent sends the call, and asks for its reply, ahead of bulk data on
	// the same connection (a Raft heartbeat behind a snapshot).
	Urgent bool
	// Metadata travels with the call (trace context, caller identity).
	Metadata codec.Metadata
	// Idempotent, Resubscribable and RequestID are the call's retry rules
	// (retry.go): what a reconnecting client may send again. Apply adds
	// the RequestID to Metadata.
	Idempotent     bool
	Resubscribable bool
	RequestID      RequestID
}

// CallOption changes one call.
type CallOption func(*CallOptions)

// Urgent marks a call urgent; see CallOptions.Urgent.
func Urgent() CallOption { return func(o *CallOptions) { o.Urgent = true } }

// WithMetadata attaches metadata to a call; build it with
// codec.AppendMetadata.
func WithMetadata(md codec.Metadata) CallOption {
	return func(o *CallOptions) { o.Metadata = md }
}

// Apply folds opts into a CallOptions. Without options it allocates
// nothing (the common case on the hot path).
func Apply(opts []CallOption) CallOptions {
	if len(opts) == 0 {
		return CallOptions{}
	}
	o := new(CallOptions)
	for _, f := range opts {
		f(o)
	}
	if !o.RequestID.IsZero() {
		o.Metadata = appendRequestID(o.Metadata, o.RequestID)
	}
	return *o
}
