package hawser

import (
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// A plan is what the CBOR allowlist check (cborscan.go) knows of a Go type:
// where its interface positions are and how its CBOR form reaches them. It
// follows the decoding rules of fxamacker/cbor v2.10.0 with hawser's
// options (case-sensitive field names); TestCBORPlanFieldsMatchEncoder
// holds the field names to what the encoder writes.
//
// Plans are immutable once published in planCache.
type plan struct {
	kind planKind
	typ  reflect.Type // the type, pointers stripped; for planIface the interface
	// dynamic: an interface position is reachable through this type's CBOR
	// form. A plan that is not dynamic is checked for well-formedness and
	// limits only.
	dynamic bool

	elem *plan // planList, planMap
	key  *plan // planMap

	// planStruct: the fields by text key and by integer key (keyasint),
	// or, toArray, every field in order.
	byName      map[string]*plan
	byInt       map[int64]*plan
	arrayFields []*plan
	fields      []planField // every field, for checking values (cborcheck.go)
	// dynNames: the fields of byName whose plans are dynamic, for a linear
	// search when there are few (set when the plan is published).
	dynNames []namedPlan
	toArray  bool
	// broken: fxamacker refuses to decode the struct type at all (a bad
	// keyasint name, both toarray and toindefarray), so its fields are
	// not listed and its input is only skipped.
	broken bool
}

type namedPlan struct {
	name string
	p    *plan
}

// maxLinearFields: up to this many dynamic fields, the scan finds a key
// by comparing it with each name (cheaper than hashing it).
const maxLinearFields = 8

type planField struct {
	idx []int // reflect index path
	p   *plan
}

type planKind uint8

const (
	planOpaque  planKind = iota // scalars, cbor.Unmarshaler, time.Time, big.Int, ...
	planAny                     // an empty interface
	planIface                   // a non-empty interface
	planCBORTag                 // cbor.Tag: its Content is an any position
	planList                    // slice or array
	planMap
	planStruct
)

var (
	planMu    sync.Mutex // serializes plan building
	planCache sync.Map   // reflect.Type -> *plan

	anyPlan = &plan{kind: planAny, typ: reflect.TypeFor[any](), dynamic: true}

	cborUnmarshalerType = reflect.TypeFor[cbor.Unmarshaler]()
	cborTagType         = reflect.TypeFor[cbor.Tag]()
	opaqueStructs       = map[reflect.Type]bool{reflect.TypeFor[time.Time](): true, reflect.TypeFor[big.Int](): true}
)

// planFor returns the plan of t.
func planFor(t reflect.Type) *plan {
	if p, ok := planCache.Load(t); ok {
		return p.(*plan)
	}
	planMu.Lock()
	defer planMu.Unlock()
	if p, ok := planCache.Load(t); ok {
		return p.(*plan)
	}
	b := planBuilder{plans: map[reflect.Type]*plan{}}
	p := b.build(t)
	// Settle dynamic over the new plans, cycles included: a plan is dynamic
	// if a child is, until nothing changes.
	for changed := true; changed; {
		changed = false
		for _, q := range b.order {
			if !q.dynamic && q.childDynamic() {
				q.dynamic, changed = true, true
			}
		}
	}
	for _, q := range b.order {
		for name, f := range q.byName {
			if f.dynamic {
				q.dynNames = append(q.dynNames, namedPlan{name, f})
			}
		}
	}
	for t, q := range b.plans {
		planCache.Store(t, q)
	}
	return p
}

func (p *plan) childDynamic() bool {
	if (p.elem != nil && p.elem.dynamic) || (p.key != nil && p.key.dynamic) {
		return true
	}
	for _, f := range p.byName {
		if f.dynamic {
			return true
		}
	}
	for _, f := range p.byInt {
		if f.dynamic {
			return true
		}
	}
	for _, f := range p.arrayFields {
		if f.dynamic {
			return true
		}
	}
	return false
}

type planBuilder struct {
	plans map[reflect.Type]*plan // built in this call, by type as asked (pointers included)
	order []*plan
}

func (b *planBuilder) build(t reflect.Type) *plan {
	if p, ok := planCache.Load(t); ok {
		return p.(*plan)
	}
	if p, ok := b.plans[t]; ok {
		return p
	}
	if t.Kind() == reflect.Pointer {
		// *X decodes as X does (fxamacker strips pointers), null aside.
		var p *plan
		if elem, ok := derefType(t); ok {
			p = b.build(elem)
		} else {
			p = &plan{typ: t} // type P *P: nothing to look at
		}
		b.plans[t] = p
		return p
	}
	p := &plan{typ: t}
	b.plans[t] = p
	b.order = append(b.order, p)
	switch {
	case t.Kind() == reflect.Interface && t.NumMethod() == 0:
		p.kind, p.dynamic = planAny, true
	case t.Kind() == reflect.Interface:
		p.kind, p.dynamic = planIface, true
	case t == cborTagType:
		p.kind, p.dynamic = planCBORTag, true
	case opaqueStructs[t] || reflect.PointerTo(t).Implements(cborUnmarshalerType):
		p.kind = planOpaque // decodes itself: nothing of hawser's to check inside
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		p.kind = planList
		p.elem = b.build(t.Elem())
	case t.Kind() == reflect.Map:
		p.kind = planMap
		p.key = b.build(t.Key())
		p.elem = b.build(t.Elem())
	case t.Kind() == reflect.Struct:
		p.kind = planStruct
		b.buildStruct(p, t)
	default:
		p.kind = planOpaque
	}
	return p
}

// buildStruct fills the field plans of struct type t.
func (b *planBuilder) buildStruct(p *plan, t reflect.Type) {
	fields, opts := structFields(t)
	toArray, toIndef := hasStructOption(opts, "toarray"), hasStructOption(opts, "toindefarray")
	if toArray && toIndef {
		p.broken = true
		return
	}
	p.toArray = toArray || toIndef
	var bad []*structField
	for _, f := range fields {
		if f.keyAsInt {
			n, err := strconv.Atoi(f.name)
			if err != nil {
				bad = append(bad, f)
				continue
			}
			f.name, f.nameAsInt = strconv.Itoa(n), int64(n)
		}
	}
	fields = visibleFields(fields)
	for _, f := range fields {
		if slices.Contains(bad, f) {
			p.broken = true
			return
		}
	}
	for _, f := range fields {
		fp := b.build(f.typ)
		p.fields = append(p.fields, planField{idx: f.idx, p: fp})
		switch {
		case p.toArray:
			p.arrayFields = append(p.arrayFields, fp)
		case f.keyAsInt:
			if p.byInt == nil {
				p.byInt = map[int64]*plan{}
			}
			p.byInt[f.nameAsInt] = fp
		default:
			if p.byName == nil {
				p.byName = map[string]*plan{}
			}
			p.byName[f.name] = fp
		}
	}
}

// maxPointers bounds the pointer levels derefType and checkValue strip:
// beyond it only a type like "type P *P" goes on.
const maxPointers = 16

// derefType strips t's pointers; false if more than maxPointers remain.
func derefType(t reflect.Type) (reflect.Type, bool) {
	for range maxPointers {
		if t.Kind() != reflect.Pointer {
			return t, true
		}
		t = t.Elem()
	}
	return t, t.Kind() != reflect.Pointer
}

// structField is one field as the CBOR codec sees it.
type structField struct {
	name      string
	nameAsInt int64
	keyAsInt  bool
	tagged    bool  // named by a cbor or json tag: wins over untagged fields at its depth
	idx       []int // index path; len is the embedding depth
	typ       reflect.Type
}

// structFields lists t's fields and those promoted from embedded structs,
// level by level, with the options of its "_" field. The rules are
// encoding/json's: a "cbor" tag (else a "json" tag) names a field, "-"
// drops it, an untagged embedded struct lends its fields one level down;
// the same struct type embedded twice at one level lends none, and one
// seen at a shallower level lends none again.
func structFields(t reflect.Type) (fields []*structField, opts string) {
	for i := range t.NumField() {
		if f := t.Field(i); f.Name == "_" {
			if tag := f.Tag.Get("cbor"); tag != "-" {
				opts = tag
			}
			break
		}
	}
	type embedded struct {
		typ reflect.Type
		idx []int
	}
	level := []embedded{{typ: t}}
	seen := map[reflect.Type]bool{t: true}
	for len(level) > 0 {
		next := map[reflect.Type][][]int{}
		var nextOrder []reflect.Type
		for _, e := range level {
			for i := range e.typ.NumField() {
				f := e.typ.Field(i)
				ft, _ := derefType(f.Type)
				if !f.IsExported() && (!f.Anonymous || ft.Kind() != reflect.Struct) {
					continue
				}
				tag := f.Tag.Get("cbor")
				if tag == "" {
					tag = f.Tag.Get("json")
				}
				if tag == "-" {
					continue
				}
				name, rest, _ := strings.Cut(tag, ",")
				idx := append(slices.Clip(e.idx), i)
				if f.Anonymous && ft.Kind() == reflect.Struct && name == "" {
					if _, ok := next[ft]; !ok {
						nextOrder = append(nextOrder, ft)
					}
					next[ft] = append(next[ft], idx)
					continue
				}
				if name == "" {
					name = f.Name
				}
				fields = append(fields, &structField{
					name:     name,
					keyAsInt: hasStructOption(","+rest, "keyasint"),
					tagged:   tag != "",
					idx:      idx,
					typ:      f.Type,
				})
			}
		}
		level = level[:0]
		for _, ft := range nextOrder {
			if len(next[ft]) > 1 || seen[ft] {
				continue
			}
			seen[ft] = true
			level = append(level, embedded{typ: ft, idx: next[ft][0]})
		}
	}
	return fields, opts
}

// visibleFields keeps, of the fields that share a name (in the name space
// of text keys or that of integer keys), the one at the shallowest depth,
// a tagged one winning over untagged ones there; if that leaves several,
// none. The result is in field index order.
func visibleFields(fields []*structField) []*structField {
	type key struct {
		name     string
		keyAsInt bool
	}
	groups := map[key][]*structField{}
	for _, f := range fields {
		k := key{f.name, f.keyAsInt}
		groups[k] = append(groups[k], f)
	}
	var out []*structField
	for _, g := range groups {
		minDepth := len(g[0].idx)
		for _, f := range g {
			minDepth = min(minDepth, len(f.idx))
		}
		var shallow, tagged []*structField
		for _, f := range g {
			if len(f.idx) == minDepth {
				shallow = append(shallow, f)
				if f.tagged {
					tagged = append(tagged, f)
				}
			}
		}
		switch {
		case len(tagged) == 1:
			out = append(out, tagged[0])
		case len(tagged) == 0 && len(shallow) == 1:
			out = append(out, shallow[0])
		}
	}
	slices.SortFunc(out, func(a, b *structField) int { return slices.Compare(a.idx, b.idx) })
	return out
}

// hasStructOption reports whether the comma-separated options opts (after
// the name) include opt.
func hasStructOption(opts, opt string) bool {
	_, rest, _ := strings.Cut(opts, ",")
	for rest != "" {
		var o string
		o, rest, _ = strings.Cut(rest, ",")
		if o == opt {
			return true
		}
	}
	return false
}
