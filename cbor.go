package hawser

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync/atomic"

	"github.com/fxamacker/cbor/v2"
)

// CBOR is the codec of structured values (structs, slices, maps, strings,
// numbers, time.Time, []byte, pointers): CBOR (RFC 8949) through
// github.com/fxamacker/cbor/v2. It is what CodecFor picks for a type that
// is neither []byte nor implements the encoding Binary interfaces, so a
// method's messages need no hand-written encoding. The wire form is in
// PROTOCOL.md, section "§11 Values: CBOR".
//
// Encoding is deterministic (RFC 8949 §4.2.1, core deterministic): the
// same value gives the same bytes, map keys and struct fields sorted,
// shortest integer and float forms, definite lengths; a time.Time is an
// RFC 3339 text string with nanoseconds (its zone becomes a fixed offset);
// a nil slice or map is null, an empty one is empty.
//
// Decoding treats every byte as hostile. Input over CBOROptions.MaxSize,
// nesting, arrays or maps over the limits, indefinite lengths, duplicate
// map keys, invalid UTF-8, unassigned simple values and bytes after the
// value are refused, and lengths are checked against the input before
// anything is allocated, so what a decode allocates is bounded by the
// limits (every element takes at least one input byte). Struct fields
// match map keys exactly (case-sensitive); keys that name no field are
// skipped, so a peer with a newer version of a struct can add fields.
//
// Interface positions take only what the allowlist admits: where a
// value's static type is a non-empty interface I (a struct field of type
// Shape, a []Shape, a map[string]Shape), only a type registered with
// RegisterType that implements I decodes, from its tag; null is a nil I.
// Where the static type is any, a registered type decodes from its tag
// too, and plain data decodes as fxamacker's basic Go types: nil, bool,
// uint64 (int64 if negative; big.Int below the int64 range), float64,
// string, []byte, []any, map[any]any, time.Time (tags 0 and 1) and
// big.Int (tags 2 and 3). Plain data is admitted there because those
// types are a closed set the peer cannot extend, decoding them runs none
// of the program's code, and they are held to the same limits. Anything
// else at an interface position — an unregistered tag, a registered type
// that does not implement I, a tag inside a tag, untagged data for a
// non-empty I — fails with a *TypeNotAllowedError before any part of the
// value is built. Append refuses, in the same way, an unregistered
// dynamic type at a non-empty interface position, and an any holding an
// unregistered struct or a slice, array or map of them (which would
// arrive as maps).
//
// Every Decode error is a *DecodeError (errors.Is(err, ErrDecode)); the
// cause is a *LimitError, a *TypeNotAllowedError, io.ErrUnexpectedEOF for
// truncated input, an error describing malformed input or a type mismatch
// (hawser's scan's or fxamacker's), or a cbor.Unmarshaler's. A type that
// implements cbor.Unmarshaler decodes itself from one well-formed data
// item within the limits and must treat it as hostile: hawser does not
// look inside.
//
// The zero CBOR is not usable; make one with NewCBOR or NewCBORWith.
type CBOR[T any] struct {
	dec     *cborDecModes
	maxSize int
	lim     cborLimits
	plan    *plan // T's plan if an interface position is reachable in T; else nil
}

// CBOROptions are the decoding limits of a CBOR codec. The zero value
// means the defaults; each field's comment gives its default and bounds.
// Both sides of a method should agree: a value within the sender's limits
// can exceed the receiver's.
type CBOROptions struct {
	// MaxSize is the largest input Decode reads, in bytes. Default 16 MiB,
	// the protocol's default maximum message size (PROTOCOL.md §4), so the
	// default codec refuses nothing the transport delivers by default;
	// 1 ... 1 GiB.
	MaxSize int
	// MaxNestedLevels bounds the nesting of arrays, maps and tags (a tag
	// inside a tag is one level). Default 32, ample for RPC messages and a
	// bound on the decoder's recursion; 4 ... 65535.
	MaxNestedLevels int
	// MaxArrayElements bounds the elements of one array. Default 65536: a
	// decoded slice is at most that many elements of its type, whatever
	// the input claims; send more as a stream. 16 ... 2147483647.
	MaxArrayElements int
	// MaxMapPairs bounds the key-value pairs of one map (a struct's fields
	// included). Default 65536; 16 ... 2147483647.
	MaxMapPairs int
}

// The defaults of CBOROptions.
const (
	DefaultCBORMaxSize          = 16 << 20
	DefaultCBORMaxNestedLevels  = 32
	DefaultCBORMaxArrayElements = 65536
	DefaultCBORMaxMapPairs      = 65536
)

// withDefaults returns o with its zero fields set to the defaults, or an
// error naming a field out of its bounds.
func (o CBOROptions) withDefaults() (CBOROptions, error) {
	fields := []struct {
		name     string
		v        *int
		def, min int
		max      int
	}{
		{"MaxSize", &o.MaxSize, DefaultCBORMaxSize, 1, 1 << 30},
		{"MaxNestedLevels", &o.MaxNestedLevels, DefaultCBORMaxNestedLevels, 4, 65535},
		{"MaxArrayElements", &o.MaxArrayElements, DefaultCBORMaxArrayElements, 16, 1<<31 - 1},
		{"MaxMapPairs", &o.MaxMapPairs, DefaultCBORMaxMapPairs, 16, 1<<31 - 1},
	}
	for _, f := range fields {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < f.min || *f.v > f.max {
			return o, fmt.Errorf("hawser: CBOROptions.%s = %d, want %d ... %d (0: %d)", f.name, *f.v, f.min, f.max, f.def)
		}
	}
	return o, nil
}

// ErrDecode matches every error of a CBOR codec's Decode (*DecodeError).
var ErrDecode = errors.New("hawser: cannot decode CBOR value")

// DecodeError is a CBOR input a codec refused: malformed, over a limit,
// refused by the allowlist, or not of the codec's type.
type DecodeError struct {
	Type reflect.Type // the type decoded into
	// Err is the cause: a *LimitError, a *TypeNotAllowedError,
	// io.ErrUnexpectedEOF (truncated or empty input), or an error of
	// fxamacker/cbor (a type mismatch, invalid UTF-8, a duplicate key, ...).
	Err error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("hawser: decoding %v from CBOR: %v", e.Type, e.Err)
}

func (e *DecodeError) Unwrap() error        { return e.Err }
func (e *DecodeError) Is(target error) bool { return target == ErrDecode }

// LimitError is input over one of the CBOROptions limits.
type LimitError struct {
	Limit string // the CBOROptions field: "MaxSize", "MaxNestedLevels", "MaxArrayElements", "MaxMapPairs"
	Max   int    // its value
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("hawser: CBOR input over %s (%d)", e.Limit, e.Max)
}

// NewCBOR returns the CBOR codec of T with the default limits.
func NewCBOR[T any]() CBOR[T] {
	c, err := NewCBORWith[T](CBOROptions{})
	if err != nil {
		panic(err) // the defaults are within their bounds
	}
	return c
}

// NewCBORWith returns the CBOR codec of T with the limits of opts; it
// fails only on an option out of its bounds. Give it to NewMethodCodec or
// NewStreamCodec.
func NewCBORWith[T any](opts CBOROptions) (CBOR[T], error) {
	o, err := opts.withDefaults()
	if err != nil {
		return CBOR[T]{}, err
	}
	dec := &cborDecModes{opts: cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		UTF8:              cbor.UTF8RejectInvalid,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
		SimpleValues:      cborSimpleValues,
		MaxNestedLevels:   o.MaxNestedLevels,
		MaxArrayElements:  o.MaxArrayElements,
		MaxMapPairs:       o.MaxMapPairs,
	}}
	if _, err := dec.mode(typeTable()); err != nil {
		return CBOR[T]{}, fmt.Errorf("hawser: CBOR decoding options: %w", err)
	}
	c := CBOR[T]{
		dec:     dec,
		maxSize: o.MaxSize,
		lim:     cborLimits{depth: o.MaxNestedLevels, array: o.MaxArrayElements, pairs: o.MaxMapPairs},
	}
	if p := planFor(reflect.TypeFor[T]()); p.dynamic {
		c.plan = p
	}
	return c, nil
}

// cborDecModes is a codec's decoding mode over the registry's latest
// snapshot, built again when a type is registered. Copies of a CBOR share
// it.
type cborDecModes struct {
	opts cbor.DecOptions
	cur  atomic.Pointer[cborDecMode]
}

type cborDecMode struct {
	reg *registeredTypes
	dm  cbor.DecMode
}

func (m *cborDecModes) mode(reg *registeredTypes) (cbor.DecMode, error) {
	if cur := m.cur.Load(); cur != nil && cur.reg == reg {
		return cur.dm, nil
	}
	dm, err := m.opts.DecModeWithTags(reg.tags)
	if err != nil {
		return nil, err
	}
	m.cur.Store(&cborDecMode{reg: reg, dm: dm})
	return dm, nil
}

// cborEncOptions are the encoding options of every CBOR codec: core
// deterministic (sorted keys, shortest forms, definite lengths), times as
// RFC 3339 text with nanoseconds.
func cborEncOptions() cbor.EncOptions {
	opts := cbor.CoreDetEncOptions()
	opts.Time = cbor.TimeRFC3339Nano
	return opts
}

// cborSimpleValues: of the simple values, only false, true, null and
// undefined (20 to 23) decode; the others have no Go value but
// cbor.SimpleValue.
var cborSimpleValues = func() *cbor.SimpleValueRegistry {
	var reject []func(*cbor.SimpleValueRegistry) error
	for sv := range 256 {
		if sv < 20 || sv > 31 {
			reject = append(reject, cbor.WithRejectedSimpleValue(cbor.SimpleValue(sv)))
		}
	}
	r, err := cbor.NewSimpleValueRegistryFromDefaults(reject...)
	if err != nil {
		panic(err)
	}
	return r
}()

// Append appends the CBOR encoding of v to dst. It fails with a
// *TypeNotAllowedError for an interface value the peer would refuse or
// could not decode to its type (see CBOR); when T has interface positions,
// with a *LimitError for a value nested deeper than MaxNestedLevels (which
// the peer would refuse; a cyclic value is one); and with fxamacker's
// error for a value CBOR cannot hold (a channel, a function).
func (c CBOR[T]) Append(dst []byte, v T) ([]byte, error) {
	reg := typeTable()
	if c.plan != nil {
		if err := checkValue(reflect.ValueOf(&v).Elem(), c.plan, reg, c.lim.depth); err != nil {
			return dst, err
		}
	}
	buf := bytes.NewBuffer(dst)
	if err := reg.enc.MarshalToBuffer(v, buf); err != nil {
		return dst, err
	}
	return buf.Bytes(), nil
}

// Decode decodes the one CBOR data item that fills b. The result does not
// alias b. Every error is a *DecodeError.
func (c CBOR[T]) Decode(b []byte) (T, error) {
	var v T
	if len(b) > c.maxSize {
		return v, c.decodeError(&LimitError{Limit: "MaxSize", Max: c.maxSize})
	}
	reg := typeTable()
	if c.plan != nil {
		if err := scanCBOR(b, c.plan, c.lim, reg); err != nil {
			return v, c.decodeError(err)
		}
	}
	dm, err := c.dec.mode(reg)
	if err != nil {
		return v, c.decodeError(err)
	}
	if err := dm.Unmarshal(b, &v); err != nil {
		var zero T
		return zero, c.decodeError(err)
	}
	return v, nil
}

// decodeError wraps a cause, giving fxamacker's limit errors as
// *LimitError and an empty input as io.ErrUnexpectedEOF (io.EOF would read
// as the end of a stream to StreamReader.All).
func (c CBOR[T]) decodeError(err error) error {
	var (
		nested *cbor.MaxNestedLevelError
		array  *cbor.MaxArrayElementsError
		pairs  *cbor.MaxMapPairsError
	)
	switch {
	case errors.As(err, &nested):
		err = &LimitError{Limit: "MaxNestedLevels", Max: c.lim.depth}
	case errors.As(err, &array):
		err = &LimitError{Limit: "MaxArrayElements", Max: c.lim.array}
	case errors.As(err, &pairs):
		err = &LimitError{Limit: "MaxMapPairs", Max: c.lim.pairs}
	case errors.Is(err, io.EOF):
		err = io.ErrUnexpectedEOF
	}
	return &DecodeError{Type: reflect.TypeFor[T](), Err: err}
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
