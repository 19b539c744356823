package codec

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/cespare/xxhash/v2"
)

// CallPrefixSize is the size of the fixed part of a CALL body: the method ID.
const CallPrefixSize = 8

// MethodID names a method on the wire: the xxhash64 of its full name
// (PROTOCOL.md §3.4). Registries refuse two names with the same ID.
func MethodID(name string) uint64 { return xxhash.Sum64String(name) }

// Call is the decoded body of a CALL frame. Metadata and Payload alias the
// body given to ParseCall.
type Call struct {
	Method   uint64
	Metadata Metadata // nil unless FlagMetadata is set
	Payload  []byte
}

// ParseCall decodes a CALL body (PROTOCOL.md §3.4):
//
//	method   u64
//	[mdLen   u16, metadata mdLen bytes]   only with FlagMetadata
//	payload  the rest
func ParseCall(h Header, body []byte) (Call, error) {
	if len(body) < CallPrefixSize {
		return Call{}, ErrBadFrame
	}
	c := Call{Method: binary.BigEndian.Uint64(body)}
	rest := body[CallPrefixSize:]
	if h.Flags&FlagMetadata != 0 {
		if len(rest) < 2 {
			return Call{}, ErrBadMetadata
		}
		n := int(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
		if n > len(rest) || n > MaxMetadataSize {
			return Call{}, ErrBadMetadata
		}
		md := Metadata(rest[:n:n])
		if err := md.Validate(); err != nil {
			return Call{}, err
		}
		c.Metadata = md
		rest = rest[n:]
	}
	c.Payload = rest
	return c, nil
}

// CallPrefixLen is the number of bytes AppendCallPrefix appends.
func CallPrefixLen(md Metadata) int {
	if len(md) == 0 {
		return CallPrefixSize
	}
	return CallPrefixSize + 2 + len(md)
}

// AppendCallPrefix appends the method ID and, if md is not empty, the
// metadata block. The caller sets FlagMetadata when len(md) > 0. md must be
// valid and at most MaxMetadataSize bytes (build it with AppendMetadata).
func AppendCallPrefix(dst []byte, method uint64, md Metadata) []byte {
	dst = binary.BigEndian.AppendUint64(dst, method)
	if len(md) > 0 {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(md)))
		dst = append(dst, md...)
	}
	return dst
}

// MaxDeadline is the largest remaining deadline a CALL can carry; a longer
// one is sent as MaxDeadline (the caller still enforces its own).
const MaxDeadline = time.Duration(math.MaxUint32) * time.Microsecond

// DeadlineArg encodes a remaining deadline into a CALL's Arg: whole
// microseconds, rounded up, at least 1, saturating at MaxDeadline. d <= 0
// means no deadline and encodes as 0.
func DeadlineArg(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	if d >= MaxDeadline {
		return math.MaxUint32
	}
	us := (d + time.Microsecond - 1) / time.Microsecond
	return uint32(us)
}

// ArgDeadline decodes a CALL's Arg; 0 means no deadline.
func ArgDeadline(arg uint32) time.Duration {
	return time.Duration(arg) * time.Microsecond
}
