package auth

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hawser-rpc/hawser"
)

// ErrBadPermission is wrapped by every error of ParsePermission: a
// permission string that does not follow the grammar. It is a
// configuration error, reported at startup (or, for a DB data source, when
// the user logs in), never a permission that silently matches nothing.
var ErrBadPermission = errors.New("auth: malformed permission")

// StartFlowMethod is the name of the one method every flow is started
// through (server.RegisterFlow). InvokeRpc.startFlow allows every flow.
const StartFlowMethod = hawser.StartFlowMethod

// Permission is one parsed permission string, after Corda's grammar:
//
//	ALL                   every method and every flow
//	InvokeRpc.<method>    the method registered under that name (which may
//	                      contain dots: InvokeRpc.kv.Get)
//	InvokeRpc.startFlow   every flow
//	StartFlow.<flow>      the flow registered under that name
//
// The action (ALL, InvokeRpc, StartFlow) is case-insensitive; the method
// or flow name is not, as registered names are not.
type Permission struct {
	Action Action
	Target string // the method or flow name; "" for ALL
}

// Action is the part of a permission before the first dot.
type Action uint8

const (
	ActionAll       Action = iota + 1 // ALL
	ActionInvokeRPC                   // InvokeRpc.<method>
	ActionStartFlow                   // StartFlow.<flow>
)

func (p Permission) String() string {
	switch p.Action {
	case ActionAll:
		return "ALL"
	case ActionInvokeRPC:
		return "InvokeRpc." + p.Target
	case ActionStartFlow:
		return "StartFlow." + p.Target
	}
	return "?"
}

// maxPermission bounds a permission string; registered names are far
// shorter, and a data source's rows are read from outside.
const maxPermission = 1024

// ParsePermission parses one permission string. It rejects an empty
// string, an unknown action, ALL with a target, InvokeRpc or StartFlow
// without one, and targets with white space, control characters or an
// empty dot-separated part ("kv..Get", "kv.").
func ParsePermission(s string) (Permission, error) {
	if s == "" {
		return Permission{}, fmt.Errorf("%w: empty permission", ErrBadPermission)
	}
	if len(s) > maxPermission {
		return Permission{}, fmt.Errorf("%w: %d bytes (at most %d)", ErrBadPermission, len(s), maxPermission)
	}
	action, target, dotted := strings.Cut(s, ".")
	switch {
	case strings.EqualFold(action, "ALL"):
		if dotted {
			return Permission{}, fmt.Errorf("%w: %q: ALL takes no target", ErrBadPermission, s)
		}
		return Permission{Action: ActionAll}, nil
	case strings.EqualFold(action, "InvokeRpc"):
		if err := checkTarget(s, target, dotted); err != nil {
			return Permission{}, err
		}
		return Permission{Action: ActionInvokeRPC, Target: target}, nil
	case strings.EqualFold(action, "StartFlow"):
		if err := checkTarget(s, target, dotted); err != nil {
			return Permission{}, err
		}
		return Permission{Action: ActionStartFlow, Target: target}, nil
	}
	return Permission{}, fmt.Errorf("%w: %q: unknown action %q (want ALL, InvokeRpc.<method> or StartFlow.<flow>)", ErrBadPermission, s, action)
}

func checkTarget(s, target string, dotted bool) error {
	if !dotted || target == "" {
		return fmt.Errorf("%w: %q: a method or flow name must follow the dot", ErrBadPermission, s)
	}
	for _, part := range strings.Split(target, ".") {
		if part == "" {
			return fmt.Errorf("%w: %q: empty name between dots", ErrBadPermission, s)
		}
	}
	for _, r := range target {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%w: %q: white space or a control character in the name", ErrBadPermission, s)
		}
	}
	return nil
}

// Permissions is a user's parsed permissions, immutable. The zero value
// (and nil) allows nothing: a user has no permission by default.
type Permissions struct {
	all     bool
	anyFlow bool
	methods map[string]struct{}
	flows   map[string]struct{}
	list    []Permission
}

// ParsePermissions parses a user's permission strings; the first malformed
// one is the error.
func ParsePermissions(ss []string) (*Permissions, error) {
	p := &Permissions{}
	for _, s := range ss {
		perm, err := ParsePermission(s)
		if err != nil {
			return nil, err
		}
		p.add(perm)
	}
	return p, nil
}

func (p *Permissions) add(perm Permission) {
	p.list = append(p.list, perm)
	switch perm.Action {
	case ActionAll:
		p.all = true
	case ActionInvokeRPC:
		if perm.Target == StartFlowMethod {
			p.anyFlow = true
		}
		if p.methods == nil {
			p.methods = map[string]struct{}{}
		}
		p.methods[perm.Target] = struct{}{}
	case ActionStartFlow:
		if p.flows == nil {
			p.flows = map[string]struct{}{}
		}
		p.flows[perm.Target] = struct{}{}
	}
}

// AllowsMethod reports whether the permissions allow calling the method
// registered under name: ALL or InvokeRpc.<name>.
func (p *Permissions) AllowsMethod(name string) bool {
	if p == nil {
		return false
	}
	if p.all {
		return true
	}
	_, ok := p.methods[name]
	return ok
}

// AllowsFlow reports whether the permissions allow starting the flow
// registered under name: ALL, InvokeRpc.startFlow or StartFlow.<name>.
func (p *Permissions) AllowsFlow(name string) bool {
	if p == nil {
		return false
	}
	if p.all || p.anyFlow {
		return true
	}
	_, ok := p.flows[name]
	return ok
}

// List returns the parsed permissions in the order given.
func (p *Permissions) List() []Permission {
	if p == nil {
		return nil
	}
	return append([]Permission(nil), p.list...)
}
