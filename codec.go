package hawser

import (
	"encoding"
	"fmt"
	"reflect"
)

// Codec turns values of T into payload bytes and back.
type Codec[T any] interface {
	// Append appends the encoding of v to dst. The result may alias v when
	// T is already bytes.
	Append(dst []byte, v T) ([]byte, error)
	// Decode decodes b. The result may alias b when T is []byte; decoders
	// that keep bytes must copy them (the encoding.BinaryUnmarshaler rule).
	Decode(b []byte) (T, error)
}

// Raw is the codec of []byte payloads: no copy either way.
type Raw struct{}

// Append returns v itself when dst is empty (the payload is sent as it is),
// else dst with v appended.
func (Raw) Append(dst, v []byte) ([]byte, error) {
	if len(dst) == 0 {
		return v, nil
	}
	return append(dst, v...), nil
}

// Decode returns b.
func (Raw) Decode(b []byte) ([]byte, error) { return b, nil }

// Binary is the codec of types that implement encoding.BinaryAppender (or
// BinaryMarshaler) and encoding.BinaryUnmarshaler, on the value or, for
// pointer types, on the pointed-to type (T = *Msg with methods on *Msg).
type Binary[T any] struct {
	appendFn func(dst []byte, v T) ([]byte, error)
	decodeFn func(b []byte) (T, error)
}

func (c Binary[T]) Append(dst []byte, v T) ([]byte, error) { return c.appendFn(dst, v) }
func (c Binary[T]) Decode(b []byte) (T, error)             { return c.decodeFn(b) }

var (
	appenderType    = reflect.TypeFor[encoding.BinaryAppender]()
	marshalerType   = reflect.TypeFor[encoding.BinaryMarshaler]()
	unmarshalerType = reflect.TypeFor[encoding.BinaryUnmarshaler]()
)

// CodecFor returns the codec for T: Raw for []byte, Binary for types with
// the encoding Binary interfaces (an error saying what T lacks if it has
// only some), and CBOR for every other type.
func CodecFor[T any]() (Codec[T], error) {
	if c, ok := any(Raw{}).(Codec[T]); ok {
		return c, nil
	}
	t := reflect.TypeFor[T]()
	if !implementsBinary(t) {
		return NewCBOR[T](), nil
	}
	var c Binary[T]
	switch {
	case t.Implements(appenderType):
		c.appendFn = func(dst []byte, v T) ([]byte, error) {
			return any(v).(encoding.BinaryAppender).AppendBinary(dst)
		}
	case t.Implements(marshalerType):
		c.appendFn = func(dst []byte, v T) ([]byte, error) {
			b, err := any(v).(encoding.BinaryMarshaler).MarshalBinary()
			return append(dst, b...), err
		}
	default:
		return nil, fmt.Errorf("hawser: %v implements neither encoding.BinaryAppender nor encoding.BinaryMarshaler; use []byte or give a Codec", t)
	}
	switch {
	case t.Kind() == reflect.Pointer && t.Implements(unmarshalerType):
		elem := t.Elem()
		c.decodeFn = func(b []byte) (T, error) {
			v := reflect.New(elem).Interface().(T)
			err := any(v).(encoding.BinaryUnmarshaler).UnmarshalBinary(b)
			return v, err
		}
	case reflect.PointerTo(t).Implements(unmarshalerType):
		c.decodeFn = func(b []byte) (T, error) {
			var v T
			err := any(&v).(encoding.BinaryUnmarshaler).UnmarshalBinary(b)
			return v, err
		}
	default:
		return nil, fmt.Errorf("hawser: %v does not implement encoding.BinaryUnmarshaler (on the value or its pointer)", t)
	}
	return c, nil
}
