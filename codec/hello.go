package codec

import (
	"encoding/binary"
	"errors"
)

// Protocol versions this implementation speaks (PROTOCOL.md §5.1).
const (
	VersionMin uint16 = 1
	VersionMax uint16 = 1
)

// PrefaceSize is the size of the preface each side sends first, inside TLS.
const PrefaceSize = 40

// Magic opens every preface.
var Magic = [4]byte{'H', 'W', 'S', 'R'}

// Preface is the first thing each side sends (PROTOCOL.md §5.1):
//
//	magic "HWSR", minVersion u16, maxVersion u16, nonce [32]byte
type Preface struct {
	Min, Max uint16
	Nonce    [32]byte
}

// AppendPreface appends the encoding of p.
func AppendPreface(dst []byte, p Preface) []byte {
	dst = append(dst, Magic[:]...)
	dst = binary.BigEndian.AppendUint16(dst, p.Min)
	dst = binary.BigEndian.AppendUint16(dst, p.Max)
	return append(dst, p.Nonce[:]...)
}

// ParsePreface decodes a preface. It returns ErrNeedMore if b is short,
// ErrBadMagic if b does not start with Magic, and ErrBadHello if the version
// range is empty or contains 0.
func ParsePreface(b []byte) (Preface, error) {
	if len(b) < PrefaceSize {
		return Preface{}, ErrNeedMore
	}
	if [4]byte(b[:4]) != Magic {
		return Preface{}, ErrBadMagic
	}
	p := Preface{Min: binary.BigEndian.Uint16(b[4:]), Max: binary.BigEndian.Uint16(b[6:])}
	copy(p.Nonce[:], b[8:PrefaceSize])
	if p.Min == 0 || p.Min > p.Max {
		return Preface{}, ErrBadHello
	}
	return p, nil
}

// Negotiate returns the highest version both ranges contain.
func Negotiate(a, b Preface) (uint16, bool) {
	lo, hi := max(a.Min, b.Min), min(a.Max, b.Max)
	if lo > hi {
		return 0, false
	}
	return hi, true
}

// Features are optional capabilities announced in HELLO and HELLO_ACK; one
// is used only when both sides announce it.
//
// Only append to this list: the values are part of the protocol.
type Features uint64

const (
	// FeatureS2 : the sender accepts s2-compressed payloads (FlagCompressed).
	FeatureS2 Features = 1 << iota
)

// ProofSize is the size of a cluster-key proof (HMAC-SHA256).
const ProofSize = 32

// MaxHelloSize bounds a HELLO or HELLO_ACK body.
const MaxHelloSize = 64 << 10

// Hello is the body of HELLO (dialer) and HELLO_ACK (acceptor): a sequence of
// TLV fields (tag u8, length u16, value) in any order (PROTOCOL.md §5.2).
// Unknown tags are skipped; a repeated tag is an error. A zero numeric field
// means "not sent".
type Hello struct {
	Version      uint16   // HELLO_ACK: the chosen version
	Features     Features // optional capabilities
	NodeID       string   // at most 255 bytes
	AppVersion   string   // at most 255 bytes
	Proof        [ProofSize]byte
	MaxFrame     uint32   // largest frame body the sender accepts
	MaxMessage   uint32   // largest reassembled message the sender accepts
	StreamWindow uint32   // initial receive window per stream, bytes
	MaxCalls     uint32   // HELLO_ACK: concurrent calls allowed per connection
	MaxStreams   uint32   // HELLO_ACK: concurrent streams allowed per connection
	Methods      []uint64 // HELLO_ACK: the method IDs the acceptor serves

	// Client RPC (PROTOCOL.md §5.4): a dialer that logs in sends Username
	// and Password instead of a Proof; the acceptor announces its
	// application's PlatformVersion.
	Username        string // HELLO: at most MaxUsername bytes
	Password        string // HELLO: at most MaxPassword bytes
	PlatformVersion uint32 // HELLO_ACK: the server's platform version
}

// MaxUsername and MaxPassword bound a login's fields.
const (
	MaxUsername = 255
	MaxPassword = 1024
)

// TLV tags of Hello. Only append to this list.
const (
	tagVersion = iota + 1
	tagFeatures
	tagNodeID
	tagAppVersion
	tagProof
	tagMaxFrame
	tagMaxMessage
	tagStreamWindow
	tagMaxCalls
	tagMaxStreams
	tagMethods
	tagUsername
	tagPassword
	tagPlatformVersion
	tagEnd
)

// ErrHelloTooLarge is returned by AppendHello for a Hello that cannot fit in
// MaxHelloSize (too many methods).
var ErrHelloTooLarge = errors.New("codec: handshake too large")

// AppendHello appends the TLV encoding of h.
func AppendHello(dst []byte, h *Hello) ([]byte, error) {
	start := len(dst)
	u16 := func(tag byte, v uint16) {
		if v != 0 {
			dst = append(dst, tag, 0, 2)
			dst = binary.BigEndian.AppendUint16(dst, v)
		}
	}
	u32 := func(tag byte, v uint32) {
		if v != 0 {
			dst = append(dst, tag, 0, 4)
			dst = binary.BigEndian.AppendUint32(dst, v)
		}
	}
	str := func(tag byte, s string) {
		if s != "" {
			dst = append(dst, tag)
			dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
			dst = append(dst, s...)
		}
	}
	if len(h.NodeID) > 255 || len(h.AppVersion) > 255 || len(h.Methods) > 8000 ||
		len(h.Username) > MaxUsername || len(h.Password) > MaxPassword {
		return dst[:start], ErrHelloTooLarge
	}
	u16(tagVersion, h.Version)
	if h.Features != 0 {
		dst = append(dst, tagFeatures, 0, 8)
		dst = binary.BigEndian.AppendUint64(dst, uint64(h.Features))
	}
	str(tagNodeID, h.NodeID)
	str(tagAppVersion, h.AppVersion)
	if h.Proof != [ProofSize]byte{} {
		dst = append(dst, tagProof, 0, ProofSize)
		dst = append(dst, h.Proof[:]...)
	}
	u32(tagMaxFrame, h.MaxFrame)
	u32(tagMaxMessage, h.MaxMessage)
	u32(tagStreamWindow, h.StreamWindow)
	u32(tagMaxCalls, h.MaxCalls)
	u32(tagMaxStreams, h.MaxStreams)
	if len(h.Methods) > 0 {
		dst = append(dst, tagMethods)
		dst = binary.BigEndian.AppendUint16(dst, uint16(8*len(h.Methods)))
		for _, m := range h.Methods {
			dst = binary.BigEndian.AppendUint64(dst, m)
		}
	}
	str(tagUsername, h.Username)
	str(tagPassword, h.Password)
	u32(tagPlatformVersion, h.PlatformVersion)
	return dst, nil
}

// ParseHello decodes a HELLO or HELLO_ACK body and checks each field's size
// and range. Strings and Methods are copied out of b.
func ParseHello(b []byte) (Hello, error) {
	var h Hello
	if len(b) > MaxHelloSize {
		return h, ErrBadHello
	}
	var seen uint32
	for len(b) > 0 {
		if len(b) < 3 {
			return h, ErrBadHello
		}
		tag, n := b[0], int(binary.BigEndian.Uint16(b[1:]))
		b = b[3:]
		if n > len(b) {
			return h, ErrBadHello
		}
		v := b[:n]
		b = b[n:]
		if tag == 0 || tag >= tagEnd {
			continue // unknown: a newer peer's field
		}
		if seen&(1<<tag) != 0 {
			return h, ErrBadHello
		}
		seen |= 1 << tag
		if err := h.setField(tag, v); err != nil {
			return h, err
		}
	}
	return h, nil
}

func (h *Hello) setField(tag byte, v []byte) error {
	fixed := func(n int) bool { return len(v) == n }
	switch tag {
	case tagVersion:
		if !fixed(2) {
			return ErrBadHello
		}
		h.Version = binary.BigEndian.Uint16(v)
	case tagFeatures:
		if !fixed(8) {
			return ErrBadHello
		}
		h.Features = Features(binary.BigEndian.Uint64(v))
	case tagNodeID:
		if len(v) > 255 {
			return ErrBadHello
		}
		h.NodeID = string(v)
	case tagAppVersion:
		if len(v) > 255 {
			return ErrBadHello
		}
		h.AppVersion = string(v)
	case tagProof:
		if !fixed(ProofSize) {
			return ErrBadHello
		}
		copy(h.Proof[:], v)
	case tagMaxFrame, tagMaxMessage, tagStreamWindow, tagMaxCalls, tagMaxStreams:
		if !fixed(4) {
			return ErrBadHello
		}
		x := binary.BigEndian.Uint32(v)
		switch tag {
		case tagMaxFrame:
			if x < MinMaxFrameSize || x > HardMaxFrameSize {
				return ErrBadHello
			}
			h.MaxFrame = x
		case tagMaxMessage:
			if x < MinMaxFrameSize || x > HardMaxMessageSize {
				return ErrBadHello
			}
			h.MaxMessage = x
		case tagStreamWindow:
			if x < MinStreamWindow {
				return ErrBadHello
			}
			h.StreamWindow = x
		case tagMaxCalls:
			h.MaxCalls = x
		case tagMaxStreams:
			h.MaxStreams = x
		}
	case tagMethods:
		if len(v)%8 != 0 {
			return ErrBadHello
		}
		h.Methods = make([]uint64, len(v)/8)
		for i := range h.Methods {
			h.Methods[i] = binary.BigEndian.Uint64(v[8*i:])
		}
	case tagUsername:
		if len(v) == 0 || len(v) > MaxUsername {
			return ErrBadHello
		}
		h.Username = string(v)
	case tagPassword:
		if len(v) > MaxPassword {
			return ErrBadHello
		}
		h.Password = string(v)
	case tagPlatformVersion:
		if !fixed(4) {
			return ErrBadHello
		}
		h.PlatformVersion = binary.BigEndian.Uint32(v)
	}
	return nil
}

// MinStreamWindow is the smallest stream window a peer may announce; it
// keeps flow control from degenerating into one tiny frame per credit.
const MinStreamWindow = 4 << 10
