package hawser

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
)

type plain struct {
	A int
	B []string
	C map[string]float64
}

type deep struct {
	Items []struct {
		Sub *Observable[plain]
	}
	ByName map[string]*Future[int]
	hidden *Observable[int] //nolint:unused // unexported fields are not walked
}

type recursive struct {
	Next *recursive
	Obs  *Observable[int]
}

type withAny struct{ V any }

func TestHolds(t *testing.T) {
	for _, c := range []struct {
		t    reflect.Type
		want bool
	}{
		{reflect.TypeFor[plain](), false},
		{reflect.TypeFor[[]byte](), false},
		{reflect.TypeFor[*Observable[int]](), true},
		{reflect.TypeFor[deep](), true},
		{reflect.TypeFor[recursive](), true},
		{reflect.TypeFor[withAny](), true},
		{reflect.TypeFor[struct{ hidden *Future[int] }](), false},
	} {
		if got := holds(c.t); got != c.want {
			t.Errorf("holds(%v) = %v, want %v", c.t, got, c.want)
		}
	}
}

// TestWalkHandles finds handles in slices of anonymous structs, maps,
// recursive types and interfaces, and refuses a pointer cycle.
func TestWalkHandles(t *testing.T) {
	o1, o2 := &Observable[plain]{id: 1}, &Observable[plain]{id: 2}
	f := &Future[int]{id: 3}
	d := deep{ByName: map[string]*Future[int]{"f": f, "nil": nil}}
	d.Items = append(d.Items, struct{ Sub *Observable[plain] }{o1}, struct{ Sub *Observable[plain] }{nil}, struct{ Sub *Observable[plain] }{o2})
	var ids []uint64
	err := walkHandles(reflect.ValueOf(withAny{V: d}), 0, func(h handle) error {
		ids = append(ids, h.handleID())
		return nil
	})
	if err != nil || len(ids) != 3 || ids[0] != 1 || ids[1] != 2 || ids[2] != 3 {
		t.Fatalf("walk found %v, %v", ids, err)
	}
	r := &recursive{}
	r.Next = r
	if err := walkHandles(reflect.ValueOf(r), 0, func(handle) error { return nil }); !errors.Is(err, ErrHandleDepth) {
		t.Fatalf("a cycle: %v", err)
	}
}

func TestReferenceEncoding(t *testing.T) {
	for _, id := range []uint64{1, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1<<64 - 1} {
		b, err := marshalRef(TagObservable, id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := unmarshalRef(TagObservable, b)
		if err != nil || got != id {
			t.Fatalf("%d: round trip %d, %v (% x)", id, got, err, b)
		}
		if _, err := unmarshalRef(TagFuture, b); !errors.Is(err, ErrBadReference) {
			t.Fatalf("%d: an observable decoded as a future", id)
		}
	}
	if _, err := marshalRef(TagObservable, 0); !errors.Is(err, ErrNotExported) {
		t.Fatalf("id 0 encoded: %v", err)
	}
	good, _ := marshalRef(TagFuture, 300)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-1],
		"trailing":  append(bytes.Clone(good), 0),
		"zero":      {0xda, 0x68, 0x77, 0x00, 0x02, 0x00},
		"long form": {0xda, 0x68, 0x77, 0x00, 0x02, 0x18, 0x05},
		"not uint":  {0xda, 0x68, 0x77, 0x00, 0x02, 0x40},
		"short tag": {0xd8, 0x02, 0x05},
	} {
		if _, err := unmarshalRef(TagFuture, b); !errors.Is(err, ErrBadReference) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestHandleErrors: handles travel from a server to its client only, once.
func TestHandleErrors(t *testing.T) {
	c := NewCBOR[deep]()
	if _, err := c.Append(nil, deep{ByName: map[string]*Future[int]{"x": NewFuture(func(context.Context) (int, error) { return 1, nil })}}); !errors.Is(err, ErrNotExported) {
		t.Fatalf("encoding an unexported future: %v", err)
	}
	var o Observable[int]
	if _, err := o.Recv(); !errors.Is(err, ErrNotBound) {
		t.Fatalf("Recv on a server-side observable: %v", err)
	}
	if err := ExportHandles[withAny](nil, withAny{V: NewObservable[int](nil)}); !errors.Is(err, ErrNotExported) {
		t.Fatalf("exporting outside a server: %v", err)
	}
}

func FuzzUnmarshalRef(f *testing.F) {
	for _, id := range []uint64{1, 24, 1 << 40} {
		b, _ := marshalRef(TagObservable, id)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := unmarshalRef(TagObservable, b)
		if err != nil {
			if !errors.Is(err, ErrBadReference) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again, _ := marshalRef(TagObservable, id)
		if !bytes.Equal(again, b) {
			t.Fatalf("% x decoded to %d, which encodes as % x", b, id, again)
		}
	})
}
