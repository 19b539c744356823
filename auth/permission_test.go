package auth

import (
	"errors"
	"strings"
	"testing"
)

// The grammar, as a table: what each string parses to and what it allows.
func TestPermissionGrammar(t *testing.T) {
	type want struct {
		methods, notMethods []string
		flows, notFlows     []string
	}
	for _, tc := range []struct {
		perm string
		want want
	}{
		{"ALL", want{methods: []string{"kv.Get", "startFlow", "x"}, flows: []string{"pay", "audit"}}},
		{"all", want{methods: []string{"kv.Get"}, flows: []string{"pay"}}},
		{"InvokeRpc.kv.Get", want{methods: []string{"kv.Get"}, notMethods: []string{"kv.Put", "kv", "kv.Get.x", "KV.GET", "kv.get"}, notFlows: []string{"kv.Get", "pay"}}},
		{"invokerpc.kv.Get", want{methods: []string{"kv.Get"}, notMethods: []string{"kv.get"}}},
		{"INVOKERPC.a.b.c.d", want{methods: []string{"a.b.c.d"}, notMethods: []string{"a.b.c", "a"}}},
		{"InvokeRpc.Echo", want{methods: []string{"Echo"}, notMethods: []string{"echo"}}},
		{"StartFlow.pay", want{flows: []string{"pay"}, notFlows: []string{"Pay", "audit", "pay.x"}, notMethods: []string{"pay", "startFlow"}}},
		{"startflow.com.example.Pay", want{flows: []string{"com.example.Pay"}, notFlows: []string{"com.example"}}},
		{"InvokeRpc.startFlow", want{methods: []string{"startFlow"}, flows: []string{"pay", "audit", "anything"}, notMethods: []string{"kv.Get"}}},
		{"invokeRPC.startFlow", want{flows: []string{"pay"}}},
		{"InvokeRpc.startflow", want{methods: []string{"startflow"}, notFlows: []string{"pay"}}}, // the method name is case-sensitive
	} {
		t.Run(tc.perm, func(t *testing.T) {
			p, err := ParsePermissions([]string{tc.perm})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tc.want.methods {
				if !p.AllowsMethod(m) {
					t.Errorf("does not allow method %q", m)
				}
			}
			for _, m := range tc.want.notMethods {
				if p.AllowsMethod(m) {
					t.Errorf("allows method %q", m)
				}
			}
			for _, f := range tc.want.flows {
				if !p.AllowsFlow(f) {
					t.Errorf("does not allow flow %q", f)
				}
			}
			for _, f := range tc.want.notFlows {
				if p.AllowsFlow(f) {
					t.Errorf("allows flow %q", f)
				}
			}
			if got := p.List()[0].String(); !strings.EqualFold(got, tc.perm) {
				t.Errorf("String() = %q", got)
			}
		})
	}
}

// Malformed strings are errors, never permissions that match nothing.
func TestPermissionMalformed(t *testing.T) {
	for _, s := range []string{
		"", "ALL.kv", "ALLx", "InvokeRpc", "InvokeRpc.", "StartFlow", "StartFlow.", "InvokeRpc.kv..Get",
		"InvokeRpc.kv.", "InvokeRpc..kv", "StartFlow.pay.", "CallRpc.kv.Get", "Invoke.kv", ".kv.Get", "kv.Get",
		"InvokeRpc.kv Get", "InvokeRpc.kv\tGet", "InvokeRpc.kv\x00", " ALL", "ALL ", "StartFlow.pay\n",
		"InvokeRpc." + strings.Repeat("x", 1100),
	} {
		if _, err := ParsePermission(s); !errors.Is(err, ErrBadPermission) {
			t.Errorf("%q: %v, want ErrBadPermission", s, err)
		}
		if _, err := ParsePermissions([]string{"ALL", s}); !errors.Is(err, ErrBadPermission) {
			t.Errorf("%q in a list: %v", s, err)
		}
	}
}

// No permission by default: nil, empty and zero Permissions allow nothing.
func TestNoPermissionByDefault(t *testing.T) {
	empty, err := ParsePermissions(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*Permissions{nil, empty, {}} {
		if p.AllowsMethod("kv.Get") || p.AllowsFlow("pay") || p.AllowsMethod("startFlow") {
			t.Fatalf("%+v allows something", p)
		}
	}
}
