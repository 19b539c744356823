package codec

import "fmt"

// Kind is a frame's type.
//
// Only append to this list: the values are part of the protocol (PROTOCOL.md §3).
type Kind uint8

const (
	kindInvalid Kind = iota // 0 is never valid on the wire
	// KindHello opens the handshake, dialer to acceptor (PROTOCOL.md §5).
	KindHello
	// KindHelloAck accepts the handshake, acceptor to dialer.
	KindHelloAck
	// KindCall starts a unary call or, with FlagStream, a server-push stream.
	KindCall
	// KindReply completes a unary call successfully.
	KindReply
	// KindError completes a call or stream with an error code, name and message.
	KindError
	// KindStreamItem carries one item of a stream.
	KindStreamItem
	// KindStreamEnd ends a stream normally.
	KindStreamEnd
	// KindCancel asks the receiver to stop working on a call or stream.
	KindCancel
	// KindCredit grants the receiver of a stream more window, in bytes.
	KindCredit
	// KindPing asks for a KindPong with the same Arg.
	KindPing
	// KindPong answers a KindPing.
	KindPong
	// KindGoAway announces that the sender accepts no call above Arg.
	KindGoAway
	// KindContinuation carries the next fragment of a message whose earlier
	// fragment had FlagMore set.
	KindContinuation
	kindEnd // one past the last valid kind
)

var kindNames = [...]string{
	kindInvalid:      "INVALID",
	KindHello:        "HELLO",
	KindHelloAck:     "HELLO_ACK",
	KindCall:         "CALL",
	KindReply:        "REPLY",
	KindError:        "ERROR",
	KindStreamItem:   "STREAM_ITEM",
	KindStreamEnd:    "STREAM_END",
	KindCancel:       "CANCEL",
	KindCredit:       "CREDIT",
	KindPing:         "PING",
	KindPong:         "PONG",
	KindGoAway:       "GOAWAY",
	KindContinuation: "CONTINUATION",
}

func (k Kind) String() string {
	if k < kindEnd {
		return kindNames[k]
	}
	return fmt.Sprintf("KIND(%d)", uint8(k))
}

// Flags modify a frame. A flag that is not allowed on a frame's kind is a
// protocol error (PROTOCOL.md §3.2).
type Flags uint8

// Only append to this list: the values are part of the protocol.
const (
	// FlagCompressed: the payload is an s2 block (negotiated by FeatureS2).
	FlagCompressed Flags = 1 << iota
	// FlagMore: a KindContinuation frame with the same ID follows.
	FlagMore
	// FlagStream: on CALL, the caller opens a server-push stream.
	FlagStream
	// FlagUrgent: on CALL, the reply is sent ahead of bulk data.
	FlagUrgent
	// FlagMetadata: the CALL body carries a metadata block after the method.
	FlagMetadata
)

// allowedFlags lists the flags each kind may carry.
var allowedFlags = [kindEnd]Flags{
	KindCall:         FlagCompressed | FlagMore | FlagStream | FlagUrgent | FlagMetadata,
	KindReply:        FlagCompressed | FlagMore,
	KindStreamItem:   FlagCompressed | FlagMore,
	KindContinuation: FlagCompressed | FlagMore,
}

// Code classifies an error carried by ERROR and GOAWAY frames. Codes 1 to 16
// mean what the gRPC codes of the same number mean.
//
// Only append to this list: the values are part of the protocol (PROTOCOL.md §6).
type Code uint16

const (
	CodeOK                 Code = iota // no error
	CodeCanceled                       // the caller cancelled
	CodeUnknown                        // a handler error without a registered code
	CodeInvalidArgument                // the request could not be decoded or was refused as malformed
	CodeDeadlineExceeded               // the deadline passed before the handler finished
	CodeNotFound                       // application: not found
	CodeAlreadyExists                  // application: already exists
	CodePermissionDenied               // the caller may not call this method
	CodeResourceExhausted              // too many calls or streams; retry later or elsewhere
	CodeFailedPrecondition             // application: wrong state for this call
	CodeAborted                        // application: aborted, typically a conflict
	CodeOutOfRange                     // application: out of range
	CodeUnimplemented                  // no handler for this method
	CodeInternal                       // the handler panicked or broke an invariant
	CodeUnavailable                    // not processed (the receiver is going away); safe to retry elsewhere
	CodeDataLoss                       // application: unrecoverable data loss
	CodeUnauthenticated                // the cluster-key proof was missing or wrong
	CodeProtocol                       // the peer broke the protocol; the connection closes
	CodeVersionMismatch                // no common protocol version
	CodeFrameTooLarge                  // a frame exceeded the receiver's limit
	CodeMessageTooLarge                // a reassembled message exceeded the receiver's limit
	CodeIdle                           // GOAWAY: closing an idle connection
	CodeShutdown                       // GOAWAY: the sender is shutting down
	CodeKeepalive                      // GOAWAY: the peer did not answer keepalive pings
	CodeSlowReader                     // GOAWAY: the peer did not read what it was sent (PROTOCOL.md §9)
	codeEnd
)

var codeNames = [...]string{
	CodeOK:                 "ok",
	CodeCanceled:           "canceled",
	CodeUnknown:            "unknown",
	CodeInvalidArgument:    "invalid argument",
	CodeDeadlineExceeded:   "deadline exceeded",
	CodeNotFound:           "not found",
	CodeAlreadyExists:      "already exists",
	CodePermissionDenied:   "permission denied",
	CodeResourceExhausted:  "resource exhausted",
	CodeFailedPrecondition: "failed precondition",
	CodeAborted:            "aborted",
	CodeOutOfRange:         "out of range",
	CodeUnimplemented:      "unimplemented",
	CodeInternal:           "internal",
	CodeUnavailable:        "unavailable",
	CodeDataLoss:           "data loss",
	CodeUnauthenticated:    "unauthenticated",
	CodeProtocol:           "protocol error",
	CodeVersionMismatch:    "version mismatch",
	CodeFrameTooLarge:      "frame too large",
	CodeMessageTooLarge:    "message too large",
	CodeIdle:               "idle",
	CodeShutdown:           "shutdown",
	CodeKeepalive:          "keepalive timeout",
	CodeSlowReader:         "slow reader",
}

func (c Code) String() string {
	if c < codeEnd {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", uint16(c))
}

// Known reports whether c is a code this version of the protocol defines.
// Unknown codes from a newer peer are kept as they are, not rejected.
func (c Code) Known() bool { return c < codeEnd }
