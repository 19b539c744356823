package hawser

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"

	"github.com/hawser-rpc/hawser/codec"
)

// Retry rules: what a reconnecting client (client.Reconnecting) may send
// again after its connection failed, and the request IDs a server
// deduplicates (server.DedupConfig, PROTOCOL.md §5.4.1).

// Idempotent declares that running a method, stream or flow twice has the
// effect of running it once (a read, a put of a fixed value): a
// reconnecting client sends its calls again after a reconnect. Without
// it, a call that may have reached the server before its connection
// failed is not sent again: it fails with an error matching
// ErrMaybeExecuted, unless it carries a request ID the server
// deduplicates (WithRequestID). Flows are not idempotent unless declared
// so (Corda's rule: never start a flow twice).
func Idempotent() MethodOption { return func(o *methodOptions) { o.idempotent = true } }

// IdempotentCall marks one call idempotent (CallOptions.Idempotent).
// Method.Call, Stream.Open and Flow.Start add it for definitions declared
// Idempotent.
func IdempotentCall() CallOption { return func(o *CallOptions) { o.Idempotent = true } }

// Resubscribable declares a stream whose consumer can live with missed
// items: through a reconnecting client, the stream is opened again (same
// method, same request) after a reconnect and keeps delivering to the
// same reader, whose Recv first returns an error matching ErrResubscribed,
// once per re-open. A stream that is not resubscribable fails with the
// transport error when its connection does. Only for NewStream; methods
// and flows ignore it.
func Resubscribable() MethodOption { return func(o *methodOptions) { o.resubscribable = true } }

// ResubscribableCall marks one stream resubscribable
// (CallOptions.Resubscribable); Stream.Open adds it for streams declared
// Resubscribable.
func ResubscribableCall() CallOption { return func(o *CallOptions) { o.Resubscribable = true } }

// retryOptions appends the call options that carry a definition's retry
// rules to opts.
func (o *methodOptions) retryOptions(opts []CallOption) []CallOption {
	if o.idempotent {
		opts = append(opts, IdempotentCall())
	}
	if o.resubscribable {
		opts = append(opts, ResubscribableCall())
	}
	return opts
}

// RequestID names one logical call across its attempts: a server runs a
// unary call or a flow start that carries one at most once per user and
// method within its deduplication window, and answers a repeat with the
// first attempt's outcome (PROTOCOL.md §5.4.1). Make one per logical call
// with NewRequestID, or derive one from a natural key of your own (the
// first 16 bytes of its SHA-256, say), and give it to every attempt. The
// zero RequestID means none.
type RequestID [16]byte

// NewRequestID returns a random RequestID (crypto/rand).
func NewRequestID() RequestID {
	var id RequestID
	_, _ = rand.Read(id[:]) // never fails (crypto/rand crashes the program instead)
	return id
}

// IsZero reports whether id is the zero RequestID (none).
func (id RequestID) IsZero() bool { return id == RequestID{} }

// String is id in hex.
func (id RequestID) String() string { return hex.EncodeToString(id[:]) }

// RequestIDKey is the metadata key a request ID travels under: 16 bytes
// of value (PROTOCOL.md §5.4.1). The key is reserved.
const RequestIDKey = "hawser-request-id"

// WithRequestID attaches id to a call (CallOptions.RequestID). It travels
// in the call's metadata, after any WithMetadata block; a block too large
// for it then fails the call with codec.ErrMetadataTooLarge before it is
// sent. A server serves the deduplication of unary methods and flows only;
// a stream ignores it.
func WithRequestID(id RequestID) CallOption { return func(o *CallOptions) { o.RequestID = id } }

// appendRequestID returns a copy of md with the request ID entry after
// its entries. It never fails: a block that grows past MaxMetadataSize is
// refused by the connection before it sends anything, so a call never
// goes out without its ID.
func appendRequestID(md codec.Metadata, id RequestID) codec.Metadata {
	out := make(codec.Metadata, 0, len(md)+3+len(RequestIDKey)+len(id))
	out = append(out, md...)
	out = append(out, byte(len(RequestIDKey)))
	out = append(out, RequestIDKey...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(id)))
	return append(out, id[:]...)
}

// DedupInfoMethod is the method a server whose request-ID table is on
// answers (PROTOCOL.md §5.4.1): 16 bytes that identify the table (a new
// value when the server restarts, so the outcomes it kept are gone) and
// the window as u64 milliseconds, big-endian. It needs no permission.
const DedupInfoMethod = "hawser.dedupInfo"

// ErrMaybeExecuted: the call was sent, its connection failed before the
// outcome arrived, and it was not sent again because running it twice may
// not be safe (it is neither Idempotent nor carries a request ID the
// server that may have run it still remembers). It may or may not have
// run. The error also matches ErrTransport.
var ErrMaybeExecuted = errors.New("hawser: the call may have run before its connection failed; not sent again")

// ErrResubscribed is what Recv of a resubscribable stream returns once
// after its reconnecting client re-opened it on a new connection: items
// sent meanwhile may have been missed, and the next Recv returns the new
// stream's items. It does not end the stream (StreamReader.All yields it
// and continues).
var ErrResubscribed = errors.New("hawser: stream re-opened after a reconnect; items may have been missed")

// Request-ID deduplication errors, sent by a server (PROTOCOL.md §5.4.1).
// They are registered, so errors.Is works on the client.
var (
	// ErrOutcomeUnknown: a call with this request ID ran before, but its
	// outcome was not kept (its reply exceeded the server's
	// DedupConfig.MaxReplyBytes, or its handler panicked): the server does
	// not run it again.
	ErrOutcomeUnknown = errors.New("hawser: the call with this request ID already ran; its outcome was not kept")
	// ErrRequestIDReused: the request ID was used before for a different
	// request (user, method and ID equal, payload not): the handler did
	// not run.
	ErrRequestIDReused = errors.New("hawser: request ID reused for a different request")
	// ErrBadRequestID: the request ID metadata is not 16 bytes.
	ErrBadRequestID = errors.New("hawser: malformed request ID")
	// ErrRequestInProgress: a call with this request ID is running, and
	// this repeat of it reached an Inline handler, which cannot wait for
	// it; the outcome will be known when the first returns. The handler
	// did not run again.
	ErrRequestInProgress = errors.New("hawser: a call with this request ID is in progress")
)

func init() {
	RegisterError("hawser.OutcomeUnknown", codec.CodeAlreadyExists, ErrOutcomeUnknown)
	RegisterError("hawser.RequestIDReused", codec.CodeInvalidArgument, ErrRequestIDReused)
	RegisterError("hawser.BadRequestID", codec.CodeInvalidArgument, ErrBadRequestID)
	RegisterError("hawser.RequestInProgress", codec.CodeAborted, ErrRequestInProgress)
}
