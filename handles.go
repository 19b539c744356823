package hawser

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
)

// A handle is an Observable or a Future: a value that travels as a
// reference to a stream of the connection that carried it (PROTOCOL.md
// §12). The server exports it (registers its producer with the
// connection); the client binds it (subscribes to that stream).
type handle interface {
	export(ex Exporter) (uint64, error)
	bind(b *binder) error
	unbind()
	handleID() uint64
}

var handleType = reflect.TypeFor[handle]()

// maxHandleDepth bounds the walk over a value's fields: deeper values (or
// pointer cycles in a handler's reply) are refused, not walked forever.
const maxHandleDepth = 128

// ErrHandleDepth: a value nests deeper than the handle walk follows.
var ErrHandleDepth = errors.New("hawser: value nests too deeply to look for observables and futures")

var holdsCache sync.Map // reflect.Type → bool

// holds reports whether values of t may contain a handle: t is one, or
// has one in an exported field, element or map value, or has an interface
// anywhere that could hold one.
func holds(t reflect.Type) bool {
	if v, ok := holdsCache.Load(t); ok {
		return v.(bool)
	}
	r := holdsWalk(t, map[reflect.Type]bool{})
	holdsCache.Store(t, r)
	return r
}

func holdsWalk(t reflect.Type, visiting map[reflect.Type]bool) bool {
	if t.Implements(handleType) {
		return true
	}
	if visiting[t] {
		return false // a cycle adds no handle of its own
	}
	visiting[t] = true
	defer delete(visiting, t)
	switch t.Kind() {
	case reflect.Interface:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return holdsWalk(t.Elem(), visiting)
	case reflect.Map:
		return holdsWalk(t.Elem(), visiting)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if f.IsExported() && holdsWalk(f.Type, visiting) {
				return true
			}
		}
	}
	return false
}

func holdsT[T any]() bool { return holds(reflect.TypeFor[T]()) }

// HoldsHandles reports whether values of T may contain an Observable or a
// Future (so a server exports them before sending a T).
func HoldsHandles[T any]() bool { return holdsT[T]() }

// walkHandles calls fn for every non-nil handle in v, in field, element and
// key order (map values in the map's order).
func walkHandles(v reflect.Value, depth int, fn func(handle) error) error {
	if depth > maxHandleDepth {
		return ErrHandleDepth
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		if v.Type().Implements(handleType) {
			return fn(v.Interface().(handle))
		}
		if !holds(v.Type().Elem()) {
			return nil
		}
		return walkHandles(v.Elem(), depth+1, fn)
	case reflect.Interface:
		if v.IsNil() {
			return nil
		}
		e := v.Elem()
		if !holds(e.Type()) {
			return nil
		}
		return walkHandles(e, depth+1, fn)
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() || !holds(f.Type) {
				continue
			}
			if err := walkHandles(v.Field(i), depth+1, fn); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if !holds(v.Type().Elem()) {
			return nil
		}
		for i := range v.Len() {
			if err := walkHandles(v.Index(i), depth+1, fn); err != nil {
				return err
			}
		}
	case reflect.Map:
		if !holds(v.Type().Elem()) {
			return nil
		}
		it := v.MapRange()
		for it.Next() {
			if err := walkHandles(it.Value(), depth+1, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// Exporter takes the observables and futures of a value that a server
// handler returns or sends: the server implements it for each client
// connection (server.Server does), and the connection's client subscribes
// to them by the IDs Export returns.
type Exporter interface {
	// Export registers p and starts its producer; the ID names it on the
	// wire. It fails when the connection cannot take more (closed, or at
	// its limit of subscriptions).
	Export(p *Publication) (uint64, error)
	// Drop cancels a publication that was exported but will not reach the
	// client (the value holding it could not be sent).
	Drop(id uint64)
}

// HandleKind says whether a Publication is an observable or a future.
type HandleKind uint8

const (
	KindObservable HandleKind = iota + 1
	KindFuture
)

// Publication is an exported observable or future as the server sees it.
type Publication struct {
	Kind     HandleKind
	Overflow Overflow
	// Run produces the items, in order, calling send with each encoded
	// item (send copies it or sends it before it returns); it returns nil
	// at the end, or the error the client receives. ctx ends when the
	// client unsubscribes, goes away, or is disconnected; send fails from
	// then on. Handles inside the items are exported with ex.
	Run func(ctx context.Context, ex Exporter, send func(item []byte) error) error
}

// ExportHandles exports every observable and future in v through ex, so
// that v can be encoded and sent to ex's client. If one fails, those
// exported before it are dropped. Values whose type holds no handles
// return at once.
func ExportHandles[T any](ex Exporter, v T) error {
	if !holdsT[T]() {
		return nil
	}
	return exportValue(ex, reflect.ValueOf(&v).Elem())
}

func exportValue(ex Exporter, v reflect.Value) error {
	var done []uint64
	err := walkHandles(v, 0, func(h handle) error {
		if ex == nil {
			return ErrNotExported
		}
		id, err := h.export(ex)
		if err != nil {
			return err
		}
		done = append(done, id)
		return nil
	})
	if err != nil {
		for _, id := range done {
			ex.Drop(id)
		}
		return err
	}
	return nil
}

// DropHandles cancels the exported handles of v (when v could not be
// sent after ExportHandles).
func DropHandles[T any](ex Exporter, v T) {
	if !holdsT[T]() || ex == nil {
		return
	}
	_ = walkHandles(reflect.ValueOf(&v).Elem(), 0, func(h handle) error {
		if id := h.handleID(); id != 0 {
			ex.Drop(id)
		}
		return nil
	})
}

// bindHandles subscribes to every handle in *v through b. If one fails,
// those bound before it are closed.
func bindHandles[T any](b *binder, v *T) error {
	var bound []handle
	err := walkHandles(reflect.ValueOf(v).Elem(), 0, func(h handle) error {
		if err := h.bind(b); err != nil {
			return err
		}
		bound = append(bound, h)
		return nil
	})
	if err != nil {
		for _, h := range bound {
			h.unbind()
		}
		return fmt.Errorf("hawser: subscribing to the observables and futures of %s: %w", b.name, err)
	}
	return nil
}
