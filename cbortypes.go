package hawser

import (
	"errors"
	"fmt"
	"maps"
	"math/big"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/hawser-rpc/hawser/codec"
)

// The CBOR tag numbers hawser keeps for its own types (observables,
// futures and other handles that travel inside values and encode
// themselves): RegisterType refuses them. "hw" is 0x6877; the range lies in
// IANA's first-come-first-served space (PROTOCOL.md, "§11 Values: CBOR").
const (
	ReservedTagMin uint64 = 0x68770000
	ReservedTagMax uint64 = 0x687700FF
)

// ErrTypeNotAllowed matches every *TypeNotAllowedError. It is registered
// as "hawser.TypeNotAllowed" with code InvalidArgument, so a request that
// a server refuses for it fails on the caller with errors.Is(err,
// ErrTypeNotAllowed).
var ErrTypeNotAllowed = errors.New("hawser: type not allowed")

func init() {
	RegisterError("hawser.TypeNotAllowed", codec.CodeInvalidArgument, ErrTypeNotAllowed)
}

// TypeNotAllowedError is a value refused by the allowlist of decodable
// types (see RegisterType): at a position whose static type is Interface,
// the input carried no tag, a tag no type is registered under, a
// registered type that does not implement Interface, or a tag inside a
// tag. Decode reports it, inside a *DecodeError, before it builds any part
// of the value; Append reports it for a value that the peer would refuse
// or could not decode to the same type.
type TypeNotAllowedError struct {
	// Interface is the static type of the position: an interface type,
	// any included.
	Interface reflect.Type
	// Tag is the CBOR tag number the value carried, if Tagged.
	Tag    uint64
	Tagged bool
	// Nested: Tag's content was itself a tag. hawser registers one tag
	// per type, so a chain of tags names no registered type.
	Nested bool
	// Type is the concrete type involved: the one registered under Tag
	// when decoding (nil if Tag is not registered), the value's dynamic
	// type when encoding.
	Type reflect.Type

	got string // what the input held instead of a tag: "map", "unsigned integer", ...
}

func (e *TypeNotAllowedError) Error() string {
	in := ifaceName(e.Interface)
	switch {
	case !e.Tagged && e.Type != nil:
		return fmt.Sprintf("hawser: %v is not registered with hawser.RegisterType, so it cannot travel as %s", e.Type, in)
	case !e.Tagged:
		return fmt.Sprintf("hawser: untagged CBOR %s where %s needs a registered tag", e.got, in)
	case e.Nested:
		return fmt.Sprintf("hawser: CBOR tag %d holds another tag where %s needs one registered tag", e.Tag, in)
	case e.Type == nil:
		return fmt.Sprintf("hawser: CBOR tag %d is not registered (decoding %s)", e.Tag, in)
	}
	return fmt.Sprintf("hawser: %v (CBOR tag %d) does not implement %s", e.Type, e.Tag, in)
}

func (e *TypeNotAllowedError) Is(target error) bool { return target == ErrTypeNotAllowed }

func ifaceName(t reflect.Type) string {
	if t == nil || (t.Kind() == reflect.Interface && t.NumMethod() == 0 && t.Name() == "") {
		return "any"
	}
	return t.String()
}

// RegisterType allows the concrete type C to be decoded from hostile bytes
// wherever a value's static type is an interface that C (or *C)
// implements, any included, and gives it the CBOR tag number tag: encoding
// a C (or a pointer to one) anywhere writes tag(content), and decoding
// requires the tag, also where the static type is C itself. Register the
// same types under the same tags on both sides, at init, like
// RegisterError.
//
// The allowlist is one list, not one per interface: registering C says
// that building a C from a peer's bytes is safe, and an interface field
// then takes exactly the registered types that implement it. Nothing else
// decodes at an interface position: untagged data, an unregistered tag, a
// registered type that does not implement the interface and a tag inside
// a tag fail with a *TypeNotAllowedError before anything of the value is
// built (an any position also takes plain data; see CBOR).
//
// A registered type decodes as a new *C in a field of a non-empty
// interface type and as a C value in an any field (the rule of
// fxamacker/cbor, which builds the values); declare the interface's
// methods on *C and store *C to round-trip a field exactly.
//
// C must be a named type that is not a pointer or an interface, nor
// time.Time, big.Int, cbor.Tag or cbor.RawTag (built in). tag must not be
// 0 to 3 or 55799 (built in) or within ReservedTagMin..ReservedTagMax
// (hawser's own). Pick tags from IANA's first-come-first-served range
// (32768 and up) or a range your organisation owns. RegisterType panics on
// a type or tag registered twice and on the cases above: those are
// programming errors.
func RegisterType[C any](tag uint64) {
	if tag >= ReservedTagMin && tag <= ReservedTagMax {
		panic(fmt.Sprintf("hawser: RegisterType: tag %#x is reserved for hawser (%#x..%#x)", tag, ReservedTagMin, ReservedTagMax))
	}
	registerType(reflect.TypeFor[C](), tag)
}

// typeRegistry: registrations are serialized by mu; the snapshot is
// replaced, never changed, so that Decode and Append read it with one
// atomic load. Each snapshot has its own tag set and encoding mode (and
// each codec builds its decoding mode over a snapshot's tags once), so
// that a type registered after a codec was made (a method declared in a
// package's var block, the type registered in its init) encodes and
// decodes with its tag, without the lock fxamacker's shared tag sets take
// on every value.
var typeRegistry struct {
	mu   sync.Mutex
	snap atomic.Pointer[registeredTypes]
}

type registeredTypes struct {
	byTag  map[uint64]reflect.Type
	byType map[reflect.Type]uint64
	tags   cbor.TagSet
	enc    cbor.UserBufferEncMode
}

// newRegisteredTypes returns the snapshot of the types in byTag; it fails
// if fxamacker refuses one.
func newRegisteredTypes(byTag map[uint64]reflect.Type) (*registeredTypes, error) {
	r := &registeredTypes{byTag: byTag, byType: make(map[reflect.Type]uint64, len(byTag)), tags: cbor.NewTagSet()}
	opts := cbor.TagOptions{EncTag: cbor.EncTagRequired, DecTag: cbor.DecTagRequired}
	for tag, t := range byTag {
		r.byType[t] = tag
		if err := r.tags.Add(opts, t, tag); err != nil {
			return nil, err
		}
	}
	var err error
	r.enc, err = cborEncOptions().UserBufferEncModeWithTags(r.tags)
	return r, err
}

var builtinTypes = map[reflect.Type]bool{
	reflect.TypeFor[time.Time]():   true,
	reflect.TypeFor[big.Int]():     true,
	reflect.TypeFor[cbor.Tag]():    true,
	reflect.TypeFor[cbor.RawTag](): true,
}

// registerType registers t under tag without the reserved-range check:
// hawser's own types (ReservedTagMin..ReservedTagMax) come through here.
func registerType(t reflect.Type, tag uint64) {
	switch {
	case t.Kind() == reflect.Pointer || t.Kind() == reflect.Interface:
		panic(fmt.Sprintf("hawser: RegisterType: %v is a pointer or an interface; register the concrete type", t))
	case t.Name() == "" || t.PkgPath() == "":
		panic(fmt.Sprintf("hawser: RegisterType: %v is not a named type", t))
	case builtinTypes[t]:
		panic(fmt.Sprintf("hawser: RegisterType: %v is built into the CBOR codec", t))
	case tag <= 3 || tag == 55799:
		panic(fmt.Sprintf("hawser: RegisterType: tag %d is built into the CBOR codec", tag))
	}
	typeRegistry.mu.Lock()
	defer typeRegistry.mu.Unlock()
	old := typeTable()
	if rt, dup := old.byTag[tag]; dup {
		panic(fmt.Sprintf("hawser: RegisterType: tag %d registered twice (%v, %v)", tag, rt, t))
	}
	if n, dup := old.byType[t]; dup {
		panic(fmt.Sprintf("hawser: RegisterType: %v registered twice (tags %d, %d)", t, n, tag))
	}
	byTag := maps.Clone(old.byTag)
	if byTag == nil {
		byTag = map[uint64]reflect.Type{}
	}
	byTag[tag] = t
	next, err := newRegisteredTypes(byTag)
	if err != nil {
		panic("hawser: RegisterType: " + err.Error())
	}
	typeRegistry.snap.Store(next)
}

// typeTable returns the registered types; the maps must not be changed.
func typeTable() *registeredTypes {
	if r := typeRegistry.snap.Load(); r != nil {
		return r
	}
	return noTypes
}

var noTypes = func() *registeredTypes {
	r, err := newRegisteredTypes(nil)
	if err != nil {
		panic(err)
	}
	return r
}()
