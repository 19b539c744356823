package auth

import (
	"context"
	"net"
	"testing"
)

// BenchmarkCheckMethod is the permission check a client port makes per
// call, for an in-memory user with a few permissions.
func BenchmarkCheckMethod(b *testing.B) {
	src, err := NewInMemory(EncryptionNone, []UserConfig{{Username: "u", Password: "p",
		Permissions: []string{"InvokeRpc.kv.Get", "InvokeRpc.kv.Put", "InvokeRpc.bench.Echo", "StartFlow.pay"}}})
	if err != nil {
		b.Fatal(err)
	}
	svc, err := New(Config{Source: src})
	if err != nil {
		b.Fatal(err)
	}
	sess, err := svc.Login(context.Background(), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, "u", "p")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := sess.CheckMethod(ctx, "bench.Echo"); err != nil {
			b.Fatal(err)
		}
	}
}
