package hawser

import "reflect"

// checkValue is Append's half of the allowlist: it walks v, of p's type,
// along its interface positions and refuses what the peer would refuse or
// could not decode to the same type: at a non-empty interface, a dynamic
// type that is not registered; at an any, a dynamic type that is not
// registered and is, or holds, an unregistered struct (other than
// time.Time and big.Int), which would arrive as a map. It descends
// at most maxDepth structs, slices and maps deep (a cyclic value would
// have no end).
func checkValue(v reflect.Value, p *plan, reg *registeredTypes, maxDepth int) error {
	c := valueChecker{reg: reg, max: maxDepth}
	return c.check(v, p, maxDepth)
}

type valueChecker struct {
	reg *registeredTypes
	max int
}

func (c *valueChecker) check(v reflect.Value, p *plan, depth int) error {
	if !p.dynamic {
		return nil
	}
	for range maxPointers {
		if v.Kind() != reflect.Pointer {
			break
		}
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() == reflect.Pointer {
		return nil // type P *P: fxamacker's to refuse
	}
	switch p.kind {
	case planAny, planIface:
		if v.IsNil() {
			return nil
		}
		d := v.Elem()
		base, _ := derefType(d.Type())
		if _, ok := c.reg.byType[base]; ok {
			return c.check(d, planFor(base), depth)
		}
		if p.kind == planIface || !c.plainType(d.Type(), maxPointers) {
			return &TypeNotAllowedError{Interface: p.typ, Type: d.Type()}
		}
		return c.check(d, planFor(d.Type()), depth)
	case planCBORTag:
		return c.check(v.FieldByName("Content"), anyPlan, depth)
	}
	if depth == 0 {
		return &LimitError{Limit: "MaxNestedLevels", Max: c.max}
	}
	switch p.kind {
	case planList:
		for i := range v.Len() {
			if err := c.check(v.Index(i), p.elem, depth-1); err != nil {
				return err
			}
		}
	case planMap:
		for it := v.MapRange(); it.Next(); {
			if err := c.check(it.Key(), p.key, depth-1); err != nil {
				return err
			}
			if err := c.check(it.Value(), p.elem, depth-1); err != nil {
				return err
			}
		}
	case planStruct:
		for _, f := range p.fields {
			if !f.p.dynamic {
				continue
			}
			fv, err := v.FieldByIndexErr(f.idx)
			if err != nil {
				continue // through a nil embedded pointer: not encoded
			}
			if err := c.check(fv, f.p, depth-1); err != nil {
				return err
			}
		}
	}
	return nil
}

// plainType reports whether a value of type t, in an any, decodes as data
// of the same shape: no struct in it but registered ones, time.Time and
// big.Int (interfaces in it are checked on the value). budget bounds the
// types it looks through, for types like "type L []L".
func (c *valueChecker) plainType(t reflect.Type, budget int) bool {
	if budget == 0 {
		return true
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return c.plainType(t.Elem(), budget-1)
	case reflect.Map:
		return c.plainType(t.Key(), budget-1) && c.plainType(t.Elem(), budget-1)
	case reflect.Struct:
		_, registered := c.reg.byType[t]
		return registered || opaqueStructs[t]
	}
	return true
}
