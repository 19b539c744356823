package codec

import (
	"encoding/binary"
	"errors"
	"iter"
)

// MaxMetadataSize bounds a CALL's metadata block.
const MaxMetadataSize = 8 << 10

// Metadata is an encoded metadata block: a sequence of entries
//
//	keyLen u8 (1..255), key, valueLen u16, value
//
// Keys are compared as bytes; the same key may appear more than once. A
// Metadata obtained from ParseCall aliases the frame and is valid only as long
// as the frame is.
type Metadata []byte

// ErrMetadataTooLarge is returned by AppendMetadata when the block would
// exceed MaxMetadataSize or an entry its field limits.
var ErrMetadataTooLarge = errors.New("codec: metadata entry or block too large")

// AppendMetadata appends one entry to m.
func AppendMetadata(m Metadata, key string, value []byte) (Metadata, error) {
	if len(key) == 0 || len(key) > 255 || len(value) > 0xffff ||
		len(m)+3+len(key)+len(value) > MaxMetadataSize {
		return m, ErrMetadataTooLarge
	}
	m = append(m, byte(len(key)))
	m = append(m, key...)
	m = binary.BigEndian.AppendUint16(m, uint16(len(value)))
	return append(m, value...), nil
}

// Validate checks that m is a well-formed sequence of entries.
func (m Metadata) Validate() error {
	for b := []byte(m); len(b) > 0; {
		_, _, rest, ok := nextEntry(b)
		if !ok {
			return ErrBadMetadata
		}
		b = rest
	}
	return nil
}

func nextEntry(b []byte) (key, value, rest []byte, ok bool) {
	if len(b) < 1 {
		return nil, nil, nil, false
	}
	kl := int(b[0])
	if kl == 0 || len(b) < 1+kl+2 {
		return nil, nil, nil, false
	}
	key = b[1 : 1+kl]
	vl := int(binary.BigEndian.Uint16(b[1+kl:]))
	start := 1 + kl + 2
	if len(b) < start+vl {
		return nil, nil, nil, false
	}
	return key, b[start : start+vl : start+vl], b[start+vl:], true
}

// Get returns the value of the first entry with the given key.
func (m Metadata) Get(key string) ([]byte, bool) {
	for k, v := range m.All() {
		if string(k) == key {
			return v, true
		}
	}
	return nil, false
}

// All yields every entry in order. It stops at the first malformed entry;
// blocks from ParseCall are already validated.
func (m Metadata) All() iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		for b := []byte(m); len(b) > 0; {
			k, v, rest, ok := nextEntry(b)
			if !ok || !yield(k, v) {
				return
			}
			b = rest
		}
	}
}
