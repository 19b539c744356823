package hawser

import (
	"bytes"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

// CBOR is the codec of structured values (structs, slices, maps, strings,
// numbers): CBOR (RFC 8949) through github.com/fxamacker/cbor/v2. It is
// what CodecFor picks for a type that is neither []byte nor implements the
// encoding Binary interfaces, so a method's messages need no hand-written
// encoding.
type CBOR[T any] struct {
	enc cbor.UserBufferEncMode
	dec cbor.DecMode
}

// NewCBOR returns the CBOR codec of T with hawser's encoding and decoding
// options.
func NewCBOR[T any]() CBOR[T] {
	return CBOR[T]{enc: cborEnc, dec: cborDec}
}

var (
	cborEnc cbor.UserBufferEncMode
	cborDec cbor.DecMode
)

func init() {
	var err error
	cborEnc, err = cbor.EncOptions{Sort: cbor.SortCoreDeterministic, Time: cbor.TimeRFC3339Nano}.UserBufferEncMode()
	if err != nil {
		panic(err)
	}
	cborDec, err = cbor.DecOptions{
		DupMapKey:   cbor.DupMapKeyEnforcedAPF,
		IndefLength: cbor.IndefLengthForbidden,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Append appends the CBOR encoding of v to dst.
func (c CBOR[T]) Append(dst []byte, v T) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	if err := c.enc.MarshalToBuffer(v, buf); err != nil {
		return dst, err
	}
	return buf.Bytes(), nil
}

// Decode decodes one CBOR data item that fills b.
func (c CBOR[T]) Decode(b []byte) (T, error) {
	var v T
	if err := c.dec.Unmarshal(b, &v); err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// implementsBinary reports whether t has either half of the encoding
// Binary interfaces (then CodecFor insists on both, rather than falling
// back to CBOR for a type whose author meant Binary).
func implementsBinary(t reflect.Type) bool {
	pt := t
	if t.Kind() != reflect.Pointer {
		pt = reflect.PointerTo(t)
	}
	return t.Implements(appenderType) || t.Implements(marshalerType) || pt.Implements(unmarshalerType)
}
