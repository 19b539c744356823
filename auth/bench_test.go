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
	svc, err := New(Config{Source: src, Logger: quiet()})
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

// BenchmarkLoginFailure compares a wrong password with an unknown user, at
// the default cost of each hashed encryption: the two should take the same
// time (the unknown user's password is checked against a decoy).
func BenchmarkLoginFailure(b *testing.B) {
	for _, tc := range []struct {
		enc  Encryption
		hash func() (string, error)
	}{
		{EncryptionShiro1, func() (string, error) { return HashShiro1("right", DefaultShiro1Algorithm, DefaultShiro1Iterations) }},
		{EncryptionArgon2id, func() (string, error) { return HashArgon2id("right", DefaultArgon2Params) }},
	} {
		stored, err := tc.hash()
		if err != nil {
			b.Fatal(err)
		}
		src, err := NewInMemory(tc.enc, []UserConfig{{Username: "u", Password: stored}})
		if err != nil {
			b.Fatal(err)
		}
		svc, err := New(Config{Source: src, Encryption: tc.enc, Limit: LoginLimit{Failures: -1}, Logger: quiet()})
		if err != nil {
			b.Fatal(err)
		}
		from := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
		for _, who := range []string{"wrong-password", "unknown-user"} {
			name := "u"
			if who == "unknown-user" {
				name = "nobody"
			}
			b.Run(tc.enc.String()+"/"+who, func(b *testing.B) {
				for b.Loop() {
					if _, err := svc.Login(context.Background(), from, name, "wrong"); err == nil {
						b.Fatal("login succeeded")
					}
				}
			})
		}
	}
}
