package auth

import (
	"errors"
	"strings"
	"testing"
)

// argon2Vectors were made by the reference implementation: Debian 12's
// argon2 package (0~20171227-0.3+deb12u1, the phc-winner-argon2 CLI),
// as `printf %s PASSWORD | argon2 SALT -id -t T -k M -p P -l L -e`. The
// first is also the argon2id vector of the reference's own test.c.
var argon2Vectors = []struct{ password, hash string }{
	// argon2 somesalt -id -t 2 -m 16 -p 1 -l 32 -e
	{"password", "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"},
	// argon2 saltsaltsaltsalt -id -t 2 -k 19456 -p 1 -l 32 -e (OWASP's parameters)
	{"pässwörd", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$PvSgfyNF2PJwvvyQHhu1Fj1+Y7CWmbCbYhGgqHta9To"},
	// argon2 0123456789abcdef -id -t 3 -k 4096 -p 4 -l 16 -e
	{"correct horse", "$argon2id$v=19$m=4096,t=3,p=4$MDEyMzQ1Njc4OWFiY2RlZg$95wZMzoYL11Bzz5/B5LHOQ"},
	// argon2 12345678 -id -t 1 -k 64 -p 8 -l 64 -e (smallest memory for 8 lanes, longest hash)
	{"x", "$argon2id$v=19$m=64,t=1,p=8$MTIzNDU2Nzg$p0MZmXNKa2zbK4TiRr4zjhcQ9EtVt4FWUNYB9o2OecEx8Qykc1LtVKGLXdzwtxcnq6TaS5HR9JpizdywaI509w"},
	// argon2 somesaltsomesalt -id -t 2 -k 100 -p 3 -l 32 -e (m not a multiple of 4p: rounded down)
	{"odd memory", "$argon2id$v=19$m=100,t=2,p=3$c29tZXNhbHRzb21lc2FsdA$oyTVs5QMPDyb4vipEadS+iYUJCneu4Yrk2rGogm+2uU"},
}

func TestArgon2idVectors(t *testing.T) {
	for _, tc := range argon2Vectors {
		for _, enc := range []Encryption{EncryptionArgon2id, EncryptionShiro1} {
			v, err := ParseVerifier(enc, tc.hash)
			if err != nil {
				t.Fatalf("%v: %s: %v", enc, tc.hash, err)
			}
			if enc == EncryptionShiro1 {
				continue // the same verifier: hash once
			}
			if !v.Verify(tc.password) {
				t.Errorf("%s does not verify %q", tc.hash, tc.password)
			}
			if v.(*argon2id).params.Memory <= 19456 && v.Verify(tc.password+"x") {
				t.Errorf("%s verifies %q", tc.hash, tc.password+"x")
			}
			if got := v.(*argon2id).String(); got != tc.hash {
				t.Errorf("String() = %s, want %s", got, tc.hash)
			}
		}
	}
}

func TestHashArgon2id(t *testing.T) {
	small := Argon2Params{Memory: 64, Time: 1, Threads: 2, SaltLen: 8, KeyLen: 16}
	for _, tc := range []struct {
		p, want Argon2Params
	}{
		{Argon2Params{}, DefaultArgon2Params},
		{small, small},
		{Argon2Params{Memory: 256}, Argon2Params{Memory: 256, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}},
		{Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 64, KeyLen: 64}, Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 64, KeyLen: 64}},
	} {
		s, err := HashArgon2id("pässword", tc.p)
		if err != nil {
			t.Fatalf("HashArgon2id(%+v): %v", tc.p, err)
		}
		v, err := ParseVerifier(EncryptionArgon2id, s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if got := v.(*argon2id).params; got != tc.want {
			t.Errorf("HashArgon2id(%+v) made %s: params %+v, want %+v", tc.p, s, got, tc.want)
		}
		if !v.Verify("pässword") || v.Verify("password") {
			t.Errorf("%s: round trip failed", s)
		}
	}
	if !strings.HasPrefix(mustHashArgon2id(t, "pw", Argon2Params{}), "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Error("the defaults are not OWASP's m=19456,t=2,p=1")
	}
	if a, b := mustHashArgon2id(t, "pw", small), mustHashArgon2id(t, "pw", small); a == b {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	for _, p := range []Argon2Params{
		{Memory: 7, Threads: 1},
		{Memory: 63, Threads: 8},
		{Memory: argon2MaxMemory + 1},
		{Time: argon2MaxTime + 1},
		{SaltLen: 7},
		{SaltLen: 65},
		{KeyLen: 15},
		{KeyLen: 65},
	} {
		if s, err := HashArgon2id("pw", p); err == nil {
			t.Errorf("HashArgon2id(%+v) = %s, want an error", p, s)
		}
	}
	if _, err := HashArgon2id("", small); !errors.Is(err, ErrEmptyPassword) {
		t.Errorf("HashArgon2id of an empty password: %v, want ErrEmptyPassword", err)
	}
}

// TestArgon2idBounds: the largest values accepted parse (without hashing:
// 1 GiB is too much for a test), one more does not.
func TestArgon2idBounds(t *testing.T) {
	salt64, key64 := strings.Repeat("A", 86), strings.Repeat("A", 86)
	ok := "$argon2id$v=19$m=1048576,t=32,p=255$" + salt64 + "$" + key64
	if _, err := ParseVerifier(EncryptionArgon2id, ok); err != nil {
		t.Errorf("largest parameters: %v", err)
	}
	for _, bad := range []string{
		"$argon2id$v=19$m=1048577,t=32,p=255$" + salt64 + "$" + key64,
		"$argon2id$v=19$m=1048576,t=33,p=255$" + salt64 + "$" + key64,
		"$argon2id$v=19$m=1048576,t=32,p=256$" + salt64 + "$" + key64,
		"$argon2id$v=19$m=2039,t=1,p=255$" + salt64 + "$" + key64,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt64 + "AA$" + key64,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt64 + "$" + key64 + "AA",
	} {
		if _, err := ParseVerifier(EncryptionArgon2id, bad); !errors.Is(err, ErrBadHash) {
			t.Errorf("%s: %v, want ErrBadHash", bad, err)
		}
	}
}

func mustHashArgon2id(t *testing.T, pw string, p Argon2Params) string {
	t.Helper()
	s, err := HashArgon2id(pw, p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
