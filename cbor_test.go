package hawser

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/hawser-rpc/hawser/codec"
)

// Test types. Circle and square implement testShape on their pointers;
// testNotShape is registered but is no testShape; testStranger is a
// testShape nobody registered.
type testShape interface{ Area() float64 }

type testCircle struct{ R float64 }

func (c *testCircle) Area() float64 { return 3 * c.R * c.R }

type testSquare struct {
	Side  float64
	Label any // an any inside a registered type
}

func (s *testSquare) Area() float64 { return s.Side * s.Side }

type testNotShape struct{ N string }

type testStranger struct{ X int }

func (s *testStranger) Area() float64 { return 0 }

const (
	tagCircle   = 0x48770001
	tagSquare   = 0x48770002
	tagNotShape = 0x48770003
	tagStranger = 0x48770004 // never registered
)

func init() {
	RegisterType[testCircle](tagCircle)
	RegisterType[testSquare](tagSquare)
	RegisterType[testNotShape](tagNotShape)
}

// testHandle encodes itself as a tag in hawser's reserved range, as
// hawser's observables do: a pointer field implementing cbor.Marshaler and
// cbor.Unmarshaler.
type testHandle struct{ ID uint64 }

const tagHandle = ReservedTagMin + 0xF0

var (
	handleDecodes atomic.Int64 // UnmarshalCBOR calls
	errBadHandle  = errors.New("handle: bad tag")
)

func (h *testHandle) MarshalCBOR() ([]byte, error) {
	return cbor.Marshal(cbor.Tag{Number: tagHandle, Content: h.ID})
}

func (h *testHandle) UnmarshalCBOR(b []byte) error {
	handleDecodes.Add(1)
	var raw cbor.RawTag
	if err := cbor.Unmarshal(b, &raw); err != nil {
		return err
	}
	if raw.Number != tagHandle {
		return fmt.Errorf("%w %d", errBadHandle, raw.Number)
	}
	return cbor.Unmarshal(raw.Content, &h.ID)
}

type testAddress struct {
	Street string
	Zip    uint32 `cbor:"zip"`
}

// testRecord is a typical message: nested structs, slices, maps, time,
// bytes, pointers, interface fields and a self-encoding handle.
type testRecord struct {
	ID      uint64
	Name    string
	When    time.Time
	Blob    []byte
	Tags    []string
	Attrs   map[string]int64
	Home    *testAddress
	Addrs   []testAddress
	Nested  struct{ Inner map[string][]int32 }
	Ratio   float64
	Opt     *int
	Shape   testShape
	Shapes  []testShape
	ByName  map[string]testShape
	Extra   any
	Handle  *testHandle
	Skipped string `cbor:"-"`
}

func sampleRecord() testRecord {
	seven := 7
	r := testRecord{
		ID:     1 << 40,
		Name:   "ålesund",
		When:   time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
		Blob:   []byte{0, 1, 2, 0xff},
		Tags:   []string{"a", "b"},
		Attrs:  map[string]int64{"x": -1, "y": 1 << 50, "z": 0},
		Home:   &testAddress{Street: "Strandgata 1", Zip: 6004},
		Addrs:  []testAddress{{"a", 1}, {"b", 2}},
		Ratio:  -0.25,
		Opt:    &seven,
		Shape:  &testCircle{R: 2},
		Shapes: []testShape{&testSquare{Side: 3, Label: "three"}, nil, &testCircle{R: 1}},
		ByName: map[string]testShape{"c": &testCircle{R: 4}},
		Extra:  map[any]any{"k": uint64(1), "sq": testSquare{Side: 1}},
		Handle: &testHandle{ID: 42},
	}
	r.Nested.Inner = map[string][]int32{"p": {1, -2, 3}}
	return r
}

func mustAppend[T any](t testing.TB, c CBOR[T], v T) []byte {
	t.Helper()
	b, err := c.Append(nil, v)
	if err != nil {
		t.Fatalf("Append(%+v): %v", v, err)
	}
	return b
}

// cborOf encodes v with fxamacker's defaults and the test tag set: for
// building hostile inputs that hawser's Append would refuse.
func cborOf(t testing.TB, v any) []byte {
	t.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCBORRoundTrip(t *testing.T) {
	c := NewCBOR[testRecord]()
	in := sampleRecord()
	b := mustAppend(t, c, in)
	out, err := c.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	in.Skipped = ""
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
	// Prefix bytes in dst are kept.
	b2, err := c.Append([]byte("prefix"), in)
	if err != nil || !bytes.Equal(b2, append([]byte("prefix"), b...)) {
		t.Fatalf("Append with a prefix: %x, %v", b2, err)
	}
}

func TestCBORRoundTripZeroAndNil(t *testing.T) {
	c := NewCBOR[testRecord]()
	for _, in := range []testRecord{{}, {Tags: []string{}, Attrs: map[string]int64{}, Blob: []byte{}, Shapes: []testShape{}}} {
		out, err := c.Decode(mustAppend(t, c, in))
		if err != nil || !reflect.DeepEqual(in, out) {
			t.Fatalf("%+v -> %+v, %v", in, out, err)
		}
	}
}

func TestCBORTimeKeepsInstantAndOffset(t *testing.T) {
	c := NewCBOR[time.Time]()
	in := time.Date(2024, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))
	out, err := c.Decode(mustAppend(t, c, in))
	if err != nil || !out.Equal(in) {
		t.Fatalf("%v -> %v, %v", in, out, err)
	}
	if _, off := out.Zone(); off != 3600 {
		t.Fatalf("offset %d", off)
	}
}

// The wire form of the deterministic options, byte for byte (PROTOCOL.md,
// "§11 Values: CBOR"): sorted keys (shorter first), shortest integers and floats, RFC 3339
// times, null for nil, a registered type as its tag.
func TestCBORDeterministicBytes(t *testing.T) {
	type small struct {
		B  string
		A  int
		F  float64
		T  time.Time
		N  []int
		S  testShape
		AA bool
	}
	c := NewCBOR[small]()
	v := small{B: "x", A: -2, F: 1.5, T: time.Unix(0, 0).UTC(), S: &testCircle{R: 0.5}}
	got := mustAppend(t, c, v)
	want := unhex(t, "a7"+
		"6141 21"+ // "A": -2
		"6142 6178"+ // "B": "x"
		"6146 f93e00"+ // "F": 1.5 as a half float
		"614e f6"+ // "N": null
		"6153 da48770001 a1 6152 f93800"+ // "S": tag 0x48770001 {"R": 0.5}
		"6154 74 313937302d30312d30315430303a30303a30305a"+ // "T": "1970-01-01T00:00:00Z"
		"624141 f4") // "AA": false
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
}

func TestCBORDeterministicMaps(t *testing.T) {
	c := NewCBOR[map[string]int]()
	a, b := map[string]int{}, map[string]int{}
	for i := range 200 {
		a[fmt.Sprint("k", i)] = i
		b[fmt.Sprint("k", 199-i)] = 199 - i
	}
	first := mustAppend(t, c, a)
	for range 5 {
		if got := mustAppend(t, c, a); !bytes.Equal(got, first) {
			t.Fatal("same map, different bytes")
		}
	}
	if got := mustAppend(t, c, b); !bytes.Equal(got, first) {
		t.Fatal("same map built in another order, different bytes")
	}
	r := NewCBOR[testRecord]()
	if x, y := mustAppend(t, r, sampleRecord()), mustAppend(t, r, sampleRecord()); !bytes.Equal(x, y) {
		t.Fatal("same record, different bytes")
	}
}

func TestCBORRegisteredTypesDecode(t *testing.T) {
	c := NewCBOR[testRecord]()
	in := testRecord{
		Shape:  &testSquare{Side: 2, Label: &testCircle{R: 1}},
		Shapes: []testShape{&testCircle{R: 1}, &testSquare{Side: 1}},
		ByName: map[string]testShape{"n": nil, "c": &testCircle{R: 9}},
		Extra:  []any{&testCircle{R: 5}, "plain", int64(-3)},
	}
	out, err := c.Decode(mustAppend(t, c, in))
	if err != nil {
		t.Fatal(err)
	}
	// In a testShape the registered types come back as pointers; in an
	// any as values (fxamacker's rule, documented at RegisterType).
	sq, ok := out.Shape.(*testSquare)
	if !ok || sq.Side != 2 || sq.Label != (testCircle{R: 1}) {
		t.Fatalf("Shape %#v", out.Shape)
	}
	if _, ok := out.Shapes[0].(*testCircle); !ok {
		t.Fatalf("Shapes %#v", out.Shapes)
	}
	if out.ByName["n"] != nil || out.ByName["c"].(*testCircle).R != 9 {
		t.Fatalf("ByName %#v", out.ByName)
	}
	want := []any{testCircle{R: 5}, "plain", int64(-3)}
	if !reflect.DeepEqual(out.Extra, want) {
		t.Fatalf("Extra %#v", out.Extra)
	}
	// A value of an interface type, at the top.
	top := NewCBOR[testShape]()
	s, err := top.Decode(mustAppend(t, top, testShape(&testCircle{R: 3})))
	if err != nil || s.(*testCircle).R != 3 {
		t.Fatalf("%#v %v", s, err)
	}
}

// allowlistError returns err's *TypeNotAllowedError after checking that
// err is a *DecodeError that matches ErrDecode and ErrTypeNotAllowed.
func allowlistError(t *testing.T, err error) *TypeNotAllowedError {
	t.Helper()
	var de *DecodeError
	var tn *TypeNotAllowedError
	if !errors.As(err, &de) || !errors.Is(err, ErrDecode) || !errors.Is(err, ErrTypeNotAllowed) || !errors.As(err, &tn) {
		t.Fatalf("want a *DecodeError with a *TypeNotAllowedError, got %T %v", err, err)
	}
	return tn
}

var shapeType = reflect.TypeFor[testShape]()

// The "done when": a concrete type nobody registered, in an
// interface field, is refused with the allowlist error, which names the
// tag and the interface, before any part of the value is built.
func TestCBORUnregisteredTypeRefused(t *testing.T) {
	c := NewCBOR[testRecord]()
	// What a peer that registered testStranger would send: a handle field
	// (decoded by UnmarshalCBOR) ahead of the refused shape.
	hostile := cborOf(t, map[string]any{
		"Handle": cbor.Tag{Number: tagHandle, Content: 1},
		"Shape":  cbor.Tag{Number: tagStranger, Content: map[string]int{"X": 1}},
	})
	before := handleDecodes.Load()
	v, err := c.Decode(hostile)
	tn := allowlistError(t, err)
	if !tn.Tagged || tn.Tag != tagStranger || tn.Type != nil || tn.Interface != shapeType {
		t.Fatalf("%+v", tn)
	}
	if !strings.Contains(err.Error(), fmt.Sprint(uint64(tagStranger))) || !strings.Contains(err.Error(), "testShape") {
		t.Fatalf("the message names neither the tag nor the interface: %v", err)
	}
	if n := handleDecodes.Load() - before; n != 0 {
		t.Fatalf("UnmarshalCBOR ran %d times for a refused value", n)
	}
	if !reflect.DeepEqual(v, testRecord{}) {
		t.Fatalf("a refused decode returned %+v", v)
	}

	// The sender's side: Append refuses the unregistered type.
	_, err = c.Append(nil, testRecord{Shape: &testStranger{X: 1}})
	if !errors.As(err, &tn) || tn.Type != reflect.TypeFor[*testStranger]() || tn.Interface != shapeType {
		t.Fatalf("Append: %v", err)
	}

	// On the wire it is a registered error: InvalidArgument, by name.
	code, name, _ := WireError(fmt.Errorf("decoding request: %w", allowlistErrorValue(t)))
	if code != codec.CodeInvalidArgument || name != "hawser.TypeNotAllowed" {
		t.Fatalf("WireError: %v %q", code, name)
	}
	re := NewRemoteError(code, name, "x")
	if !errors.Is(re, ErrTypeNotAllowed) {
		t.Fatal("the remote error does not match ErrTypeNotAllowed")
	}
}

func allowlistErrorValue(t *testing.T) error {
	_, err := NewCBOR[testShape]().Decode(cborOf(t, cbor.Tag{Number: tagStranger, Content: 0}))
	if err == nil {
		t.Fatal("decoded")
	}
	return err
}

func TestCBORAllowlistRefusals(t *testing.T) {
	circle := map[string]float64{"R": 1}
	tests := []struct {
		name  string
		input any // encoded with fxamacker's defaults
		check func(*TypeNotAllowedError) bool
	}{
		{"registered type that is no shape", map[string]any{"Shape": cbor.Tag{Number: tagNotShape, Content: map[string]string{"N": "x"}}},
			func(e *TypeNotAllowedError) bool {
				return e.Tag == tagNotShape && e.Type == reflect.TypeFor[testNotShape]() && e.Interface == shapeType
			}},
		{"untagged map in an interface", map[string]any{"Shape": circle},
			func(e *TypeNotAllowedError) bool { return !e.Tagged && e.Interface == shapeType && e.got == "map" }},
		{"untagged number in a slice of interfaces", map[string]any{"Shapes": []any{1}},
			func(e *TypeNotAllowedError) bool { return !e.Tagged && e.got == "unsigned integer" }},
		{"unregistered tag in a map of interfaces", map[string]any{"ByName": map[string]any{"a": cbor.Tag{Number: 99999, Content: circle}}},
			func(e *TypeNotAllowedError) bool { return e.Tag == 99999 && e.Type == nil }},
		{"tag inside a registered tag", map[string]any{"Shape": cbor.Tag{Number: tagCircle, Content: cbor.Tag{Number: tagSquare, Content: circle}}},
			func(e *TypeNotAllowedError) bool { return e.Nested && e.Tag == tagCircle }},
		{"unregistered tag in an any", map[string]any{"Extra": cbor.Tag{Number: tagStranger, Content: 1}},
			func(e *TypeNotAllowedError) bool {
				return e.Tag == tagStranger && e.Interface == reflect.TypeFor[any]()
			}},
		{"unregistered tag deep in plain data in an any", map[string]any{"Extra": map[string]any{"a": []any{1, cbor.Tag{Number: 21, Content: []byte{1}}}}},
			func(e *TypeNotAllowedError) bool { return e.Tag == 21 }},
		{"unregistered tag in an any inside a registered type", map[string]any{"Shape": cbor.Tag{Number: tagSquare, Content: map[string]any{"Label": cbor.Tag{Number: 7777, Content: 1}}}},
			func(e *TypeNotAllowedError) bool { return e.Tag == 7777 }},
		{"self-described tag in an interface", map[string]any{"Shape": cbor.Tag{Number: 55799, Content: cbor.Tag{Number: tagCircle, Content: circle}}},
			func(e *TypeNotAllowedError) bool { return e.Tag == 55799 }},
		{"time tag in an interface", map[string]any{"Shape": cbor.Tag{Number: 1, Content: 0}},
			func(e *TypeNotAllowedError) bool { return e.Tag == 1 && e.Type == nil }},
	}
	c := NewCBOR[testRecord]()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Decode(cborOf(t, tt.input))
			if tn := allowlistError(t, err); !tt.check(tn) {
				t.Fatalf("%+v (%v)", tn, err)
			}
		})
	}
}

func TestCBORAnyTakesPlainData(t *testing.T) {
	c := NewCBOR[any]()
	big1 := new(big.Int).Lsh(big.NewInt(1), 70)
	tests := []struct {
		input any
		want  any
	}{
		{nil, nil},
		{true, true},
		{7, uint64(7)},
		{-7, int64(-7)},
		{1.25, 1.25},
		{"s", "s"},
		{[]byte{1}, []byte{1}},
		{[]int{1, 2}, []any{uint64(1), uint64(2)}},
		{map[string]int{"a": 1}, map[any]any{"a": uint64(1)}},
		{big1, *big1},
		{cbor.Tag{Number: 1, Content: 0}, time.Unix(0, 0)},
		{cbor.Tag{Number: tagCircle, Content: map[string]float64{"R": 2}}, testCircle{R: 2}},
	}
	for _, tt := range tests {
		got, err := c.Decode(cborOf(t, tt.input))
		if err != nil {
			t.Fatalf("%v: %v", tt.input, err)
		}
		if tm, ok := tt.want.(time.Time); ok {
			if g, ok := got.(time.Time); !ok || !g.Equal(tm) {
				t.Fatalf("%v: %#v", tt.input, got)
			}
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Fatalf("%v: got %#v, want %#v", tt.input, got, tt.want)
		}
	}
}

func TestCBORAppendRefusals(t *testing.T) {
	c := NewCBOR[testRecord]()
	var tn *TypeNotAllowedError
	if _, err := c.Append(nil, testRecord{Extra: testStranger{X: 1}}); !errors.As(err, &tn) || tn.Interface != reflect.TypeFor[any]() {
		t.Fatalf("an unregistered struct in an any: %v", err)
	}
	if _, err := c.Append(nil, testRecord{Extra: map[string]any{"deep": []any{&testStranger{}}}}); !errors.As(err, &tn) {
		t.Fatalf("an unregistered struct deep in an any: %v", err)
	}
	if _, err := c.Append(nil, testRecord{Extra: map[string][]testStranger{"a": nil}}); !errors.As(err, &tn) {
		t.Fatalf("unregistered structs in a map in an any: %v", err)
	}
	if _, err := c.Append(nil, testRecord{Shapes: []testShape{&testCircle{}, &testStranger{}}}); !errors.As(err, &tn) {
		t.Fatalf("an unregistered shape in a slice: %v", err)
	}
	ok := []testRecord{
		{Extra: map[string]any{"t": time.Now(), "b": big.NewInt(3), "c": testCircle{}, "n": nil}},
		{Extra: map[string][]*testCircle{"a": {{R: 1}}}},
		{Extra: &testCircle{R: 1}},
		{Shape: (*testCircle)(nil)}, // a typed nil pointer: encoded as null
	}
	for _, v := range ok {
		if _, err := c.Append(nil, v); err != nil {
			t.Fatalf("%+v: %v", v, err)
		}
	}
	// A cyclic value hits the depth bound instead of the stack's.
	type node struct {
		Next *node
		V    any
	}
	n := &node{}
	n.Next = n
	var le *LimitError
	if _, err := NewCBOR[*node]().Append(nil, n); !errors.As(err, &le) || le.Limit != "MaxNestedLevels" {
		t.Fatalf("cyclic value: %v", err)
	}
}

func TestCBORSelfEncodingPointerField(t *testing.T) {
	type withHandles struct {
		A, B *testHandle
		L    []*testHandle
	}
	c := NewCBOR[withHandles]()
	in := withHandles{A: &testHandle{ID: 1}, L: []*testHandle{{ID: 2}, {ID: 3}}}
	b := mustAppend(t, c, in)
	if !bytes.Contains(b, unhex(t, "da687700f0 01")) {
		t.Fatalf("the handle's own tag is not on the wire: %x", b)
	}
	out, err := c.Decode(b)
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("%+v -> %+v, %v", in, out, err)
	}
	// Its UnmarshalCBOR's error comes back inside a *DecodeError.
	bad := cborOf(t, map[string]any{"A": cbor.Tag{Number: tagHandle + 1, Content: 1}})
	if _, err := c.Decode(bad); !errors.Is(err, ErrDecode) || !errors.Is(err, errBadHandle) {
		t.Fatalf("%v", err)
	}
}

func TestRegisterTypeRefuses(t *testing.T) {
	type local struct{}
	tests := []struct {
		name string
		reg  func()
	}{
		{"reserved range start", func() { RegisterType[local](ReservedTagMin) }},
		{"reserved range end", func() { RegisterType[local](ReservedTagMax) }},
		{"tag twice", func() { RegisterType[testStranger](tagCircle) }},
		{"type twice", func() { RegisterType[testCircle](tagStranger) }},
		{"pointer", func() { RegisterType[*testStranger](tagStranger) }},
		{"interface", func() { RegisterType[testShape](tagStranger) }},
		{"unnamed", func() { RegisterType[struct{ X int }](tagStranger) }},
		{"time.Time", func() { RegisterType[time.Time](tagStranger) }},
		{"big.Int", func() { RegisterType[big.Int](tagStranger) }},
		{"tag 1", func() { RegisterType[testStranger](1) }},
		{"tag 3", func() { RegisterType[testStranger](3) }},
		{"tag 55799", func() { RegisterType[testStranger](55799) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tt.reg()
		})
	}
	// Nothing of the refused registrations stuck.
	if _, ok := typeTable().byType[reflect.TypeFor[testStranger]()]; ok {
		t.Fatal("testStranger registered")
	}
	if _, err := NewCBOR[testShape]().Decode(cborOf(t, cbor.Tag{Number: tagStranger, Content: map[string]int{"X": 1}})); !errors.Is(err, ErrTypeNotAllowed) {
		t.Fatalf("%v", err)
	}
	// The neighbours of the range are the user's.
	edgeOnce.Do(func() {
		RegisterType[testEdgeLow](ReservedTagMin - 1)
		RegisterType[testEdgeHigh](ReservedTagMax + 1)
	})
	for _, tag := range []uint64{ReservedTagMin - 1, ReservedTagMax + 1} {
		if typeTable().byTag[tag] == nil {
			t.Fatalf("tag %#x not registered", tag)
		}
	}
}

type (
	testEdgeLow  struct{}
	testEdgeHigh struct{}
)

var edgeOnce sync.Once

// A type registered after the codec was made (a method declared in a var
// block, the type registered in init) encodes and decodes with its tag.
type testLate struct{ V int }

func (l *testLate) Area() float64 { return float64(l.V) }

const tagLate = 0x48770010

func TestCBORRegistrationAfterCodec(t *testing.T) {
	c := NewCBOR[testShape]()
	if _, ok := typeTable().byTag[tagLate]; !ok {
		if _, err := c.Append(nil, &testLate{V: 1}); !errors.Is(err, ErrTypeNotAllowed) {
			t.Fatalf("before registration: %v", err)
		}
		RegisterType[testLate](tagLate)
	}
	b := mustAppend(t, c, testShape(&testLate{V: 5}))
	v, err := c.Decode(b)
	if err != nil || v.(*testLate).V != 5 {
		t.Fatalf("%x -> %#v %v", b, v, err)
	}
}

// Nested is a type with no interface position (checked by fxamacker
// alone); nestedAny one with (checked by hawser's scan first). The limits
// must trip alike, with the same error, at the same input.
type nested struct{ N *nested }

type nestedAny struct {
	N *nestedAny
	X any
}

// deepMaps is n maps {"N": {"N": ... {}}}.
func deepMaps(n int) []byte {
	var b []byte
	for range n - 1 {
		b = append(b, 0xa1, 0x61, 'N')
	}
	return append(b, 0xa0)
}

func TestCBORLimits(t *testing.T) {
	opts := CBOROptions{MaxSize: 4096, MaxNestedLevels: 8, MaxArrayElements: 20, MaxMapPairs: 16}
	plain, err := NewCBORWith[nested](opts)
	if err != nil {
		t.Fatal(err)
	}
	dyn, _ := NewCBORWith[nestedAny](opts)
	list, _ := NewCBORWith[[]int](opts)
	listAny, _ := NewCBORWith[[]any](opts)
	m, _ := NewCBORWith[map[int]int](opts)
	mAny, _ := NewCBORWith[map[int]any](opts)
	dynList, _ := NewCBORWith[struct {
		L []int
		X any
	}](opts)

	arr := func(n int) []byte { return cborOf(t, make([]int, n)) }
	mp := func(n int) []byte {
		x := map[int]int{}
		for i := range n {
			x[i] = i
		}
		return cborOf(t, x)
	}
	tagged := func(n int) []byte { // n tags around 0
		var b []byte
		for range n {
			b = append(b, 0xd8, 0x20) // tag 32
		}
		return append(b, 0)
	}
	type dec func([]byte) error
	d := func(f func([]byte) error) dec { return f }
	tests := []struct {
		name  string
		limit string
		ok    []byte // at the limit
		over  []byte // one past it
		dec   []dec
	}{
		{"size", "MaxSize", make([]byte, 4096), make([]byte, 4097), []dec{
			d(func(b []byte) error { _, err := plain.Decode(b); return err }),
			d(func(b []byte) error { _, err := dyn.Decode(b); return err }),
		}},
		{"depth", "MaxNestedLevels", deepMaps(8), deepMaps(9), []dec{
			d(func(b []byte) error { _, err := plain.Decode(b); return err }),
			d(func(b []byte) error { _, err := dyn.Decode(b); return err }),
		}},
		{"depth of tags", "MaxNestedLevels", tagged(8), tagged(9), []dec{
			// [n tags around 0]: 1 + n-1 levels.
			d(func(b []byte) error { _, err := list.Decode(append([]byte{0x81}, b...)); return err }),
			// {"L": [n-1 tags around 0]}: 2 + n-2 levels.
			d(func(b []byte) error {
				_, err := dynList.Decode(append([]byte{0xa1, 0x61, 'L', 0x81}, b[2:]...))
				return err
			}),
		}},
		{"array", "MaxArrayElements", arr(20), arr(21), []dec{
			d(func(b []byte) error { _, err := list.Decode(b); return err }),
			d(func(b []byte) error { _, err := listAny.Decode(b); return err }),
		}},
		{"map", "MaxMapPairs", mp(16), mp(17), []dec{
			d(func(b []byte) error { _, err := m.Decode(b); return err }),
			d(func(b []byte) error { _, err := mAny.Decode(b); return err }),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, f := range tt.dec {
				err := f(tt.ok)
				var le *LimitError
				if errors.As(err, &le) {
					t.Fatalf("decoder %d: at the limit: %v", i, err)
				}
				err = f(tt.over)
				if !errors.As(err, &le) || le.Limit != tt.limit || !errors.Is(err, ErrDecode) {
					t.Fatalf("decoder %d: over the limit: %v", i, err)
				}
			}
		})
	}
	// The size limit does not apply to depth 1 etc.: a scalar at MaxSize.
	big := cborOf(t, strings.Repeat("x", 4000))
	if _, err := NewCBOR[string]().Decode(big); err != nil {
		t.Fatal(err)
	}
}

func TestCBOROptionsBounds(t *testing.T) {
	for _, o := range []CBOROptions{
		{MaxSize: -1}, {MaxSize: 1<<30 + 1}, {MaxNestedLevels: 3}, {MaxNestedLevels: 65536},
		{MaxArrayElements: 15}, {MaxMapPairs: -5},
	} {
		if _, err := NewCBORWith[int](o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	for _, o := range []CBOROptions{{}, {MaxSize: 1, MaxNestedLevels: 4, MaxArrayElements: 16, MaxMapPairs: 16}, {MaxSize: 1 << 30, MaxNestedLevels: 65535, MaxArrayElements: 1<<31 - 1}} {
		if _, err := NewCBORWith[int](o); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	c := NewCBOR[int]()
	if c.maxSize != DefaultCBORMaxSize || c.lim != (cborLimits{32, 65536, 65536}) {
		t.Fatalf("defaults %d %+v", c.maxSize, c.lim)
	}
}

// Hostile headers claim far more than the input holds: each must fail
// without allocating what it claims.
func TestCBORClaimsDoNotAllocate(t *testing.T) {
	type holder struct {
		L []uint64
		S string
		B []byte
		X any
		M map[string]testShape
	}
	c := NewCBOR[holder]()
	plain := NewCBOR[[]uint64]()
	pad := func(b []byte) []byte { return append(b, make([]byte, 20-len(b))...) } // 20-byte inputs
	claims := []struct {
		name string
		in   []byte
		dec  func([]byte) error
	}{
		{"2^31-element array", pad(unhex(t, "9b 0000000080000000")), func(b []byte) error { _, err := plain.Decode(b); return err }},
		{"2^31-element array in a field", pad(unhex(t, "a1 614c 9b0000000080000000")), func(b []byte) error { _, err := c.Decode(b); return err }},
		{"60000-element array (within the limit)", pad(unhex(t, "99 ea60")), func(b []byte) error { _, err := plain.Decode(b); return err }},
		{"2^62-byte string", pad(unhex(t, "a1 6153 7b4000000000000000")), func(b []byte) error { _, err := c.Decode(b); return err }},
		{"2^31-byte byte string", pad(unhex(t, "a1 6142 5a80000000")), func(b []byte) error { _, err := c.Decode(b); return err }},
		{"2^63-byte key", pad(unhex(t, "a1 7b8000000000000000")), func(b []byte) error { _, err := c.Decode(b); return err }},
		{"2^32-pair map in an any", pad(unhex(t, "a1 6158 bb0000000100000000")), func(b []byte) error { _, err := c.Decode(b); return err }},
		{"60000-pair map of shapes", pad(unhex(t, "a1 614d b9ea60")), func(b []byte) error { _, err := c.Decode(b); return err }},
	}
	for _, cl := range claims {
		t.Run(cl.name, func(t *testing.T) {
			if len(cl.in) != 20 {
				t.Fatalf("input of %d bytes", len(cl.in))
			}
			if err := cl.dec(cl.in); !errors.Is(err, ErrDecode) {
				t.Fatalf("decoded: %v", err)
			}
			allocs := testing.AllocsPerRun(100, func() { _ = cl.dec(cl.in) })
			var before, after runtimeMem
			before.read()
			for range 100 {
				_ = cl.dec(cl.in)
			}
			after.read()
			perOp := (after.total - before.total) / 100
			// The error and its wrapping; nothing sized by the claim.
			if allocs > 8 || perOp > 1024 {
				t.Fatalf("%v allocations, %d bytes per decode", allocs, perOp)
			}
		})
	}
}

func TestCBORHostileInputs(t *testing.T) {
	c := NewCBOR[testRecord]()
	s := NewCBOR[string]()
	valid := mustAppend(t, c, sampleRecord())
	tests := []struct {
		name string
		in   []byte
		dec  func([]byte) error
		is   error // besides ErrDecode; nil: any cause
	}{
		{"empty", nil, nil, io.ErrUnexpectedEOF},
		{"trailing byte", append(slicesClone(valid), 0), nil, nil},
		{"trailing byte after a string", append(cborOf(t, "x"), 0), func(b []byte) error { _, err := s.Decode(b); return err }, nil},
		{"indefinite array", unhex(t, "a1 6454616773 9f ff"), nil, nil},
		{"indefinite array in an unknown field", unhex(t, "a1 6154 9f ff"), nil, nil},
		{"indefinite string", unhex(t, "7f 6161 ff"), func(b []byte) error { _, err := s.Decode(b); return err }, nil},
		{"indefinite map in an any", unhex(t, "a1 6545787472 61 bf ff"), nil, nil},
		{"duplicate field", unhex(t, "a2 624944 01 624944 02"), nil, nil},
		{"duplicate key in an any map", unhex(t, "a1 6545787472 61 a2 6161 01 6161 02"), nil, nil},
		{"invalid UTF-8", unhex(t, "62 c328"), func(b []byte) error { _, err := s.Decode(b); return err }, nil},
		{"invalid UTF-8 in an any", unhex(t, "a1 6545787472 61 62 ff fe"), nil, nil},
		{"break alone", unhex(t, "ff"), nil, nil},
		{"reserved additional information", unhex(t, "1c"), nil, nil},
		{"simple value in two bytes", unhex(t, "f8 10"), nil, nil},
		{"unassigned simple value", unhex(t, "a1 6545787472 61 f0"), nil, nil},
		{"struct key that is an array", unhex(t, "a1 80 01"), nil, nil},
		{"truncated head", unhex(t, "1b 0001"), nil, io.ErrUnexpectedEOF},
		{"wrong type", unhex(t, "a1 624944 6161"), nil, nil},
		{"negative into uint", unhex(t, "a1 624944 20"), nil, nil},
		{"int64 overflow", cborOf(t, map[string]any{"Attrs": map[string]any{"x": cbor.RawMessage(unhex(t, "3bffffffffffffffff"))}}), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := tt.dec
			if dec == nil {
				dec = func(b []byte) error { _, err := c.Decode(b); return err }
			}
			err := dec(tt.in)
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, ErrDecode) {
				t.Fatalf("got %T %v", err, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("got %v, want %v", err, tt.is)
			}
			if errors.Is(err, io.EOF) {
				t.Fatalf("%v matches io.EOF (the end of a stream)", err)
			}
		})
	}
	// Every strict prefix of a valid input is refused, never a panic.
	for i := range len(valid) {
		if _, err := c.Decode(valid[:i]); !errors.Is(err, ErrDecode) {
			t.Fatalf("prefix of %d bytes: %v", i, err)
		}
	}
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

// runtimeMem reads the bytes the process has allocated so far.
type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.total = s.TotalAlloc
}

// The plans' field names match what the encoder writes for structs with
// tags, json tags, keyasint, toarray, embedding and shadowing.
func TestCBORPlanFieldsMatchEncoder(t *testing.T) {
	type Inner struct {
		A   int
		Dup int
		In  string `cbor:"in"`
	}
	type Other struct {
		Dup int
		O   bool `json:"o,omitempty"`
	}
	type withEmbedded struct {
		Inner
		*Other
		Dup     int `cbor:"dup"`
		K       int `cbor:"7,keyasint"`
		J       int `json:"jay"`
		Both    int `cbor:"c" json:"j"`
		Hidden  int `cbor:"-"`
		private int
	}
	_ = withEmbedded{private: 1} // unexported: never a key
	type shadowed struct {
		Inner
		A int // shadows Inner.A
	}
	type ambiguous struct {
		Inner
		Other // Inner.Dup and Other.Dup: neither
	}
	type arrayStruct struct {
		_ struct{} `cbor:",toarray"`
		X int
		Y string
	}
	fill := func(v reflect.Value) {
		var rec func(v reflect.Value)
		rec = func(v reflect.Value) {
			switch v.Kind() {
			case reflect.Pointer:
				v.Set(reflect.New(v.Type().Elem()))
				rec(v.Elem())
			case reflect.Struct:
				for i := range v.NumField() {
					if v.Type().Field(i).IsExported() || v.Type().Field(i).Anonymous {
						if f := v.Field(i); f.CanSet() {
							rec(f)
						}
					}
				}
			case reflect.Int:
				v.SetInt(1)
			case reflect.String:
				v.SetString("x")
			case reflect.Bool:
				v.SetBool(true)
			}
		}
		rec(v)
	}
	for _, typ := range []reflect.Type{
		reflect.TypeFor[withEmbedded](), reflect.TypeFor[shadowed](), reflect.TypeFor[ambiguous](), reflect.TypeFor[testRecord](),
	} {
		v := reflect.New(typ).Elem()
		fill(v)
		b, err := typeTable().enc.Marshal(v.Interface())
		if err != nil {
			t.Fatal(err)
		}
		var keys map[any]cbor.RawMessage
		if err := cbor.Unmarshal(b, &keys); err != nil {
			t.Fatal(err)
		}
		p := planFor(typ)
		var want, got []string
		for k := range keys {
			want = append(want, fmt.Sprint(k))
		}
		for k := range p.byName {
			got = append(got, k)
		}
		for k := range p.byInt {
			got = append(got, fmt.Sprint(k))
		}
		if !sameSet(want, got) {
			t.Errorf("%v: encoder keys %q, plan keys %q", typ, want, got)
		}
	}
	p := planFor(reflect.TypeFor[arrayStruct]())
	if !p.toArray || len(p.arrayFields) != 2 {
		t.Fatalf("toarray plan %+v", p)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// testSelfPointer is a pointer to itself: plans must still end.
type testSelfPointer *testSelfPointer

// Interfaces in types that cannot reach one get no scan; recursive types
// settle.
func TestCBORPlanDynamic(t *testing.T) {
	type tree struct {
		Kids []*tree
		M    map[string]tree
	}
	type treeAny struct {
		Kids []*treeAny
		Leaf *struct{ V any }
	}
	for typ, want := range map[reflect.Type]bool{
		reflect.TypeFor[int]():                     false,
		reflect.TypeFor[tree]():                    false,
		reflect.TypeFor[*testHandle]():             false,
		reflect.TypeFor[time.Time]():               false,
		reflect.TypeFor[treeAny]():                 true,
		reflect.TypeFor[testRecord]():              true,
		reflect.TypeFor[map[testShape]int]():       true,
		reflect.TypeFor[[3]any]():                  true,
		reflect.TypeFor[cbor.Tag]():                true,
		reflect.TypeFor[struct{ T cbor.Tag }]():    true,
		reflect.TypeFor[struct{ R cbor.RawTag }](): false,
		reflect.TypeFor[testSelfPointer]():         false,
	} {
		if got := planFor(typ).dynamic; got != want {
			t.Errorf("%v: dynamic %v", typ, got)
		}
	}
}

// Codecs are used from many goroutines while types are still being
// registered (the race detector checks the registry and the plan cache).
type testConcurrent struct{ V int }

func (c *testConcurrent) Area() float64 { return 0 }

var concurrentOnce sync.Once

func TestCBORConcurrentUse(t *testing.T) {
	c := NewCBOR[testRecord]()
	b := mustAppend(t, c, sampleRecord())
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for range 200 {
				v, err := c.Decode(b)
				if err == nil {
					_, err = c.Append(nil, v)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	concurrentOnce.Do(func() { RegisterType[testConcurrent](0x48770020) })
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v, err := c.Decode(mustAppend(t, c, testRecord{Shape: &testConcurrent{V: 1}}))
	if err != nil || v.Shape.(*testConcurrent).V != 1 {
		t.Fatalf("%+v %v", v, err)
	}
}
