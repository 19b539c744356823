package codec

import "errors"

// ErrNeedMore is the "need more bytes" result of Parse, ParseHeader and
// ParsePreface: the input is a strict prefix of a valid encoding. It is not a
// protocol error; read more and call again.
var ErrNeedMore = errors.New("codec: need more bytes")

// ErrProtocol matches (errors.Is) every decoding error below: the peer broke
// the protocol and the connection that produced the bytes must be closed
// (PROTOCOL.md §7).
var ErrProtocol = errors.New("codec: protocol violation")

// Decoding errors; each satisfies errors.Is(err, ErrProtocol).
var (
	ErrUnknownKind      = protocolError("codec: unknown frame kind")
	ErrBadFlags         = protocolError("codec: flags not allowed on this kind")
	ErrFrameTooLarge    = protocolError("codec: frame exceeds the maximum frame size")
	ErrMessageTooLarge  = protocolError("codec: message exceeds the maximum message size")
	ErrBadFrame         = protocolError("codec: malformed frame")
	ErrBadMetadata      = protocolError("codec: malformed metadata")
	ErrBadHello         = protocolError("codec: malformed handshake")
	ErrBadMagic         = protocolError("codec: not a hawser peer (bad preface magic)")
	ErrBadCompression   = protocolError("codec: malformed compressed payload")
	ErrDecompressTooBig = protocolError("codec: decompressed payload exceeds the limit")
)

type protoErr struct{ msg string }

func protocolError(msg string) error { return &protoErr{msg} }

func (e *protoErr) Error() string        { return e.msg }
func (e *protoErr) Is(target error) bool { return target == ErrProtocol }

// CodeOf maps a decoding error to the code sent in the GOAWAY that closes
// the connection.
func CodeOf(err error) Code {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return CodeFrameTooLarge
	case errors.Is(err, ErrMessageTooLarge), errors.Is(err, ErrDecompressTooBig):
		return CodeMessageTooLarge
	}
	return CodeProtocol
}
