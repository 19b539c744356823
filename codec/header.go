package codec

import "encoding/binary"

// HeaderSize is the size of every frame header in bytes.
const HeaderSize = 16

// Default and hard limits (PROTOCOL.md §4). Each side announces the limits it
// accepts in its HELLO; a sender never exceeds the peer's.
const (
	// DefaultMaxFrameSize is the largest frame body a receiver accepts unless
	// it announces otherwise.
	DefaultMaxFrameSize = 128 << 10
	// MinMaxFrameSize is the smallest max frame size a peer may announce.
	MinMaxFrameSize = 16 << 10
	// HardMaxFrameSize bounds any announced max frame size.
	HardMaxFrameSize = 16 << 20
	// DefaultFragmentSize is the largest payload a sender puts in one frame;
	// larger messages are split into CONTINUATION frames.
	DefaultFragmentSize = 64 << 10
	// HardMaxMessageSize bounds any announced max message size.
	HardMaxMessageSize = 1 << 30
	// DefaultMaxMessageSize is the largest reassembled message accepted.
	DefaultMaxMessageSize = 16 << 20
)

// Header is the fixed 16-byte frame header (PROTOCOL.md §3):
//
//	offset size field
//	0      4    Length  body bytes after the header (big-endian)
//	4      1    Kind
//	5      1    Flags
//	6      2    Code    ERROR and GOAWAY; 0 on every other kind
//	8      4    ID      request/stream ID; 0 for connection frames
//	12     4    Arg     kind-specific: CALL deadline in µs, CREDIT increment,
//	                    GOAWAY last accepted ID, PING/PONG opaque value
type Header struct {
	Length uint32
	Kind   Kind
	Flags  Flags
	Code   Code
	ID     uint32
	Arg    uint32
}

// PutHeader writes h into b[:HeaderSize]. b must be at least HeaderSize long.
func PutHeader(b []byte, h Header) {
	_ = b[HeaderSize-1]
	binary.BigEndian.PutUint32(b[0:], h.Length)
	b[4] = byte(h.Kind)
	b[5] = byte(h.Flags)
	binary.BigEndian.PutUint16(b[6:], uint16(h.Code))
	binary.BigEndian.PutUint32(b[8:], h.ID)
	binary.BigEndian.PutUint32(b[12:], h.Arg)
}

// AppendHeader appends the encoding of h to dst.
func AppendHeader(dst []byte, h Header) []byte {
	dst = binary.BigEndian.AppendUint32(dst, h.Length)
	dst = append(dst, byte(h.Kind), byte(h.Flags))
	dst = binary.BigEndian.AppendUint16(dst, uint16(h.Code))
	dst = binary.BigEndian.AppendUint32(dst, h.ID)
	return binary.BigEndian.AppendUint32(dst, h.Arg)
}

// ParseHeader decodes and validates the header at the start of buf.
//
// It returns ErrNeedMore if buf is shorter than HeaderSize, and a protocol
// error if the kind is unknown, a flag is not allowed on the kind, the body
// is longer than maxBody, or a field breaks the rules of PROTOCOL.md §3.3.
// It does not look at the body and does not allocate.
func ParseHeader(buf []byte, maxBody uint32) (Header, error) {
	if len(buf) < HeaderSize {
		return Header{}, ErrNeedMore
	}
	h := Header{
		Length: binary.BigEndian.Uint32(buf[0:]),
		Kind:   Kind(buf[4]),
		Flags:  Flags(buf[5]),
		Code:   Code(binary.BigEndian.Uint16(buf[6:])),
		ID:     binary.BigEndian.Uint32(buf[8:]),
		Arg:    binary.BigEndian.Uint32(buf[12:]),
	}
	if h.Kind == kindInvalid || h.Kind >= kindEnd {
		return h, ErrUnknownKind
	}
	if h.Flags&^allowedFlags[h.Kind] != 0 {
		return h, ErrBadFlags
	}
	if h.Length > maxBody {
		return h, ErrFrameTooLarge
	}
	if err := checkFields(h); err != nil {
		return h, err
	}
	return h, nil
}

// checkFields applies the per-kind rules on ID, Code and Length.
func checkFields(h Header) error {
	switch h.Kind {
	case KindHello, KindHelloAck:
		if h.ID != 0 || h.Code != 0 || h.Arg != 0 {
			return ErrBadFrame
		}
	case KindPing, KindPong:
		if h.ID != 0 || h.Code != 0 || h.Length != 0 {
			return ErrBadFrame
		}
	case KindGoAway:
		if h.ID != 0 {
			return ErrBadFrame
		}
	case KindCall:
		if h.ID == 0 || h.Code != 0 || h.Length < CallPrefixSize {
			return ErrBadFrame
		}
	case KindCancel, KindStreamEnd:
		if h.ID == 0 || h.Code != 0 || h.Length != 0 || h.Arg != 0 {
			return ErrBadFrame
		}
	case KindCredit:
		if h.ID == 0 || h.Code != 0 || h.Length != 0 || h.Arg == 0 {
			return ErrBadFrame
		}
	case KindError:
		if h.ID == 0 || h.Code == CodeOK || h.Arg != 0 {
			return ErrBadFrame
		}
	case KindReply, KindStreamItem, KindContinuation:
		if h.ID == 0 || h.Code != 0 || h.Arg != 0 {
			return ErrBadFrame
		}
	}
	return nil
}

// Frame is one decoded frame. Body aliases the buffer given to Parse: it is
// valid only as long as that buffer is.
type Frame struct {
	Header
	Body []byte
}

// Parse decodes the first frame in buf. It returns the frame and the number
// of bytes it occupies (HeaderSize + Length). If buf holds only a strict
// prefix of a valid frame it returns ErrNeedMore; any other error means the
// peer broke the protocol. Parse does not allocate.
func Parse(buf []byte, maxBody uint32) (Frame, int, error) {
	h, err := ParseHeader(buf, maxBody)
	if err != nil {
		return Frame{}, 0, err
	}
	end := HeaderSize + int(h.Length)
	if len(buf) < end {
		return Frame{}, 0, ErrNeedMore
	}
	return Frame{Header: h, Body: buf[HeaderSize:end:end]}, end, nil
}

// Append appends the frame f to dst, setting the header's Length from the
// body. It does not check f against the protocol rules; senders build frames
// with the helpers of this package.
func Append(dst []byte, f Frame) []byte {
	f.Length = uint32(len(f.Body))
	dst = AppendHeader(dst, f.Header)
	return append(dst, f.Body...)
}
