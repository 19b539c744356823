package hawser

import (
	"fmt"
	"io"
	"math"
	"reflect"
)

// scanCBOR checks that data is one well-formed CBOR data item within lim
// whose every interface position, as p describes the Go type, holds what
// the allowlist admits (RegisterType, CBOR). It runs before fxamacker/cbor
// decodes data, so a refused value is refused before anything of it is
// built; it allocates nothing but the plans of registered types met for
// the first time. data must be at most CBOROptions.MaxSize bytes.
//
// Every length is checked against the bytes left before it is used, and
// every array or map header against the limits before its elements are
// looked at; recursion is bounded by lim.depth.
func scanCBOR(data []byte, p *plan, lim cborLimits, reg *registeredTypes) error {
	if len(data) == 0 {
		return io.ErrUnexpectedEOF
	}
	s := scanner{data: data, lim: lim, reg: reg}
	if err := s.value(p, 0); err != nil {
		return err
	}
	if s.off != len(data) {
		return &syntaxError{off: s.off, msg: fmt.Sprintf("%d bytes after the value", len(data)-s.off)}
	}
	return nil
}

type cborLimits struct{ depth, array, pairs int }

type scanner struct {
	data []byte
	off  int
	lim  cborLimits
	reg  *registeredTypes
}

// CBOR major types (RFC 8949 §3.1).
const (
	majorUint   = 0
	majorNint   = 1
	majorBytes  = 2
	majorText   = 3
	majorArray  = 4
	majorMap    = 5
	majorTag    = 6
	majorSimple = 7
)

var majorNames = [8]string{"unsigned integer", "negative integer", "byte string", "text string", "array", "map", "tag", "simple value or float"}

// syntaxError is input that is not well-formed CBOR, or not in the subset
// hawser accepts (indefinite lengths).
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("malformed CBOR at byte %d: %s", e.off, e.msg)
}

// head reads the head of the next data item: its major type, additional
// information and argument (RFC 8949 §3).
func (s *scanner) head() (major, ai byte, arg uint64, err error) {
	if s.off >= len(s.data) {
		return 0, 0, 0, io.ErrUnexpectedEOF
	}
	at := s.off
	b := s.data[at]
	major, ai = b>>5, b&0x1f
	s.off++
	switch {
	case ai < 24:
		arg = uint64(ai)
	case ai <= 27:
		n := 1 << (ai - 24)
		if len(s.data)-s.off < n {
			return 0, 0, 0, io.ErrUnexpectedEOF
		}
		for _, c := range s.data[s.off : s.off+n] {
			arg = arg<<8 | uint64(c)
		}
		s.off += n
		if major == majorSimple && ai == 24 && arg < 32 {
			return 0, 0, 0, &syntaxError{off: at, msg: fmt.Sprintf("simple value %d in two bytes", arg)}
		}
	case ai == 31 && major >= majorBytes && major <= majorMap:
		return 0, 0, 0, &syntaxError{off: at, msg: "indefinite-length " + majorNames[major] + " (hawser forbids indefinite lengths)"}
	default:
		return 0, 0, 0, &syntaxError{off: at, msg: fmt.Sprintf("additional information %d in major type %d", ai, major)}
	}
	return major, ai, arg, nil
}

// skip checks the next data item for well-formedness and limits only.
// depth is the nesting level of the item's container.
func (s *scanner) skip(depth int) error {
	major, _, arg, err := s.head()
	if err != nil {
		return err
	}
	return s.skipBody(major, arg, depth)
}

// skipBody is skip after the head.
func (s *scanner) skipBody(major byte, arg uint64, depth int) error {
	switch major {
	case majorBytes, majorText:
		if arg > uint64(len(s.data)-s.off) {
			return io.ErrUnexpectedEOF
		}
		s.off += int(arg)
	case majorArray, majorMap:
		n, err := s.container(major, arg, depth)
		if err != nil {
			return err
		}
		if major == majorMap {
			n *= 2
		}
		for range n {
			if err := s.skip(depth + 1); err != nil {
				return err
			}
		}
	case majorTag:
		return s.tagContent(nil, depth)
	}
	return nil
}

// container checks an array or map head with argument arg at nesting level
// depth + 1 against the limits and the bytes left (every element takes at
// least one), and returns its number of elements or pairs.
func (s *scanner) container(major byte, arg uint64, depth int) (int, error) {
	if depth+1 > s.lim.depth {
		return 0, &LimitError{Limit: "MaxNestedLevels", Max: s.lim.depth}
	}
	need := arg
	if major == majorArray {
		if arg > uint64(s.lim.array) {
			return 0, &LimitError{Limit: "MaxArrayElements", Max: s.lim.array}
		}
	} else {
		if arg > uint64(s.lim.pairs) {
			return 0, &LimitError{Limit: "MaxMapPairs", Max: s.lim.pairs}
		}
		need *= 2
	}
	if need > uint64(len(s.data)-s.off) {
		return 0, io.ErrUnexpectedEOF
	}
	return int(arg), nil
}

// tagContent checks the content of a tag whose head was just read, as p
// (nil: skip it). A tag inside a tag is one level deeper (the rule of
// fxamacker/cbor's MaxNestedLevels).
func (s *scanner) tagContent(p *plan, depth int) error {
	if s.off < len(s.data) && s.data[s.off]>>5 == majorTag {
		if depth+1 > s.lim.depth {
			return &LimitError{Limit: "MaxNestedLevels", Max: s.lim.depth}
		}
		depth++
	}
	if p == nil {
		return s.skip(depth)
	}
	return s.value(p, depth)
}

// value checks the next data item as a value of p's type.
func (s *scanner) value(p *plan, depth int) error {
	if !p.dynamic {
		return s.skip(depth)
	}
	major, ai, arg, err := s.head()
	if err != nil {
		return err
	}
	switch p.kind {
	case planAny, planIface:
		return s.dynamic(p, major, ai, arg, depth)
	case planCBORTag:
		if major != majorTag {
			return s.skipBody(major, arg, depth) // fxamacker refuses it, null aside
		}
		return s.tagContent(anyPlan, depth)
	}
	// A concrete type: fxamacker reads the content of tags around it as if
	// they were absent (the type's own registered tag included).
	if major == majorTag {
		return s.tagContent(p, depth)
	}
	switch {
	case major == majorArray && p.kind == planList:
		n, err := s.container(major, arg, depth)
		if err != nil {
			return err
		}
		for range n {
			if err := s.value(p.elem, depth+1); err != nil {
				return err
			}
		}
		return nil
	case major == majorArray && p.kind == planStruct && p.toArray:
		if arg != uint64(len(p.arrayFields)) {
			return s.skipBody(major, arg, depth) // fxamacker refuses the length
		}
		n, err := s.container(major, arg, depth)
		if err != nil {
			return err
		}
		for i := range n {
			if err := s.value(p.arrayFields[i], depth+1); err != nil {
				return err
			}
		}
		return nil
	case major == majorMap && p.kind == planMap:
		n, err := s.container(major, arg, depth)
		if err != nil {
			return err
		}
		for range n {
			if err := s.value(p.key, depth+1); err != nil {
				return err
			}
			if err := s.value(p.elem, depth+1); err != nil {
				return err
			}
		}
		return nil
	case major == majorMap && p.kind == planStruct && !p.toArray:
		return s.structMap(p, arg, depth)
	}
	return s.skipBody(major, arg, depth)
}

// structMap checks the pairs of a map decoded into a struct: keys are
// field names (text) or keyasint numbers; the value of a key that names
// no field is skipped, as fxamacker skips it.
func (s *scanner) structMap(p *plan, arg uint64, depth int) error {
	n, err := s.container(majorMap, arg, depth)
	if err != nil {
		return err
	}
	for range n {
		at := s.off
		major, _, karg, err := s.head()
		if err != nil {
			return err
		}
		var field *plan
		switch major {
		case majorText, majorBytes:
			if karg > uint64(len(s.data)-s.off) {
				return io.ErrUnexpectedEOF
			}
			if major == majorText {
				field = p.fieldByName(s.data[s.off : s.off+int(karg)])
			} // a byte string never names a field (FieldNameByteStringForbidden)
			s.off += int(karg)
		case majorUint:
			if karg <= math.MaxInt64 {
				field = p.byInt[int64(karg)]
			}
		case majorNint:
			if karg <= math.MaxInt64 {
				field = p.byInt[-1^int64(karg)]
			}
		default:
			// fxamacker would decode such a key as a value (to look for
			// duplicates) before refusing it.
			return &syntaxError{off: at, msg: fmt.Sprintf("a field name of %v is a CBOR %s, not text or an integer", p.typ, majorNames[major])}
		}
		if field == nil {
			err = s.skip(depth + 1)
		} else {
			err = s.value(field, depth+1)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// dynamic checks a value at an interface position, after its head: null
// or undefined (a nil interface), one registered tag whose type implements
// the interface, or, for any, plain data or a built-in tag (0 and 1: time,
// 2 and 3: bignum).
func (s *scanner) dynamic(p *plan, major, ai byte, arg uint64, depth int) error {
	if major == majorSimple && (ai == 22 || ai == 23) {
		return nil
	}
	if major != majorTag {
		if p.kind == planIface {
			return &TypeNotAllowedError{Interface: p.typ, got: majorNames[major]}
		}
		switch major {
		case majorArray, majorMap:
			n, err := s.container(major, arg, depth)
			if err != nil {
				return err
			}
			if major == majorMap {
				n *= 2
			}
			for range n {
				if err := s.value(anyPlan, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		return s.skipBody(major, arg, depth)
	}
	if p.kind == planAny && arg <= 3 {
		return s.tagContent(nil, depth)
	}
	t := s.reg.byTag[arg]
	if t == nil {
		return &TypeNotAllowedError{Interface: p.typ, Tag: arg, Tagged: true}
	}
	if p.kind == planIface && !t.Implements(p.typ) && !reflect.PointerTo(t).Implements(p.typ) {
		return &TypeNotAllowedError{Interface: p.typ, Tag: arg, Tagged: true, Type: t}
	}
	if s.off < len(s.data) && s.data[s.off]>>5 == majorTag {
		return &TypeNotAllowedError{Interface: p.typ, Tag: arg, Tagged: true, Nested: true, Type: t}
	}
	return s.value(planFor(t), depth)
}

// fieldByName returns the plan of the field named key if it is dynamic
// (nil: skip the value), or, with many dynamic fields, whatever its plan.
func (p *plan) fieldByName(key []byte) *plan {
	if len(p.dynNames) > maxLinearFields {
		return p.byName[string(key)]
	}
	for _, f := range p.dynNames {
		if f.name == string(key) {
			return f.p
		}
	}
	return nil
}
