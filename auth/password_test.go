package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestPlain(t *testing.T) {
	for _, stored := range []string{"", "s3cret", "pässwörd-日本語", "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA", strings.Repeat("x", 5000)} {
		v, err := ParseVerifier(EncryptionNone, stored)
		if err != nil {
			t.Fatalf("NONE %q: %v", stored, err)
		}
		if !v.Verify(stored) {
			t.Errorf("NONE %q does not verify itself", stored)
		}
		for _, wrong := range []string{stored + "x", stored + "\x00", "x" + stored, strings.ToUpper(stored) + "X", stored[:len(stored)/2] + "?"} {
			if wrong != stored && v.Verify(wrong) {
				t.Errorf("NONE %q verifies %q", stored, wrong)
			}
		}
	}
	if v, _ := ParseVerifier(EncryptionNone, "abc"); v.Verify("ab") || v.Verify("abcd") || v.Verify("") {
		t.Error("NONE: a prefix or an extension verifies")
	}
	if v, _ := ParseVerifier(EncryptionNone, ""); v.Verify("\x00") {
		t.Error(`NONE "" verifies "\x00"`)
	}
}

func TestParseVerifierUnknownEncryption(t *testing.T) {
	if _, err := ParseVerifier(Encryption(7), "x"); !errors.Is(err, ErrBadHash) {
		t.Errorf("Encryption(7): %v, want ErrBadHash", err)
	}
}

func TestParseEncryption(t *testing.T) {
	for s, want := range map[string]Encryption{"": EncryptionNone, "none": EncryptionNone, "SHIRO_1_CRYPT": EncryptionShiro1, "argon2id": EncryptionArgon2id} {
		got, err := ParseEncryption(s)
		if err != nil || got != want {
			t.Errorf("ParseEncryption(%q) = %v, %v, want %v", s, got, err, want)
		}
		if back, _ := ParseEncryption(got.String()); back != got {
			t.Errorf("%v does not round-trip through String", got)
		}
	}
	if _, err := ParseEncryption("BCRYPT"); err == nil {
		t.Error("ParseEncryption(BCRYPT) succeeded")
	}
}

// malformed are stored passwords that a hashed data source rejects, one per
// way a string can be wrong.
var malformed = []string{
	// neither prefix
	"",
	"hunter2",
	"$shiro1",
	"$argon2id",
	"$argon2i$v=19$m=1024,t=2,p=1$c29tZXNhbHQ$/AomWzXGuO56QhmXE3p9/0R81VDwTUaD1xQMkGw+IbQ",
	"$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
	" $shiro1$MD5$1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	"$SHIRO1$MD5$1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	// too long
	"$shiro1$MD5$1$" + strings.Repeat("A", 1100) + "$v1gkTjDl8ut52qupFVB6pg==",

	// $shiro1$: field count
	"$shiro1$",
	"$shiro1$MD5$1$6pNXet6leyjI6VipEi1mTw==",
	"$shiro1$MD5$1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==$",
	"$shiro1$MD5$1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==$x",
	// algorithm
	"$shiro1$$1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$MD4$1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$SHA256$1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$SHA-256 $1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	// iterations
	"$shiro1$MD5$$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$MD5$0$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$MD5$-1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$MD5$+1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$MD5$ 1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$MD5$1e3$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$MD5$0x10$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$MD5$10000001$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$MD5$2147483648$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$MD5$99999999999999999999$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	// salt: none (Shiro's Hasher -ngs writes this; Shiro cannot verify it), not base64, unpadded, non-canonical
	"$shiro1$SHA-256$1$$9S+9MrKzuG/4jvbEkGKChfSCrxXdyylUH5S89Saj9sc=",
	"$shiro1$MD5$1$6pNXet6leyjI6VipEi1mTw=!$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$MD5$1$6pNXet6leyjI6VipEi1mTw$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$MD5$1$6pNXet6leyjI6VipEi1mTx==$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$MD5$1$6pNXet6l\neyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	// hash: empty, the wrong size for the algorithm, not base64, unpadded
	"$shiro1$MD5$1$6pNXet6leyjI6VipEi1mTw==$",
	"$shiro1$SHA-256$1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg==",
	"$shiro1$MD5$1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pgAA",
	"$shiro1$MD5$1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6p*==",
	"$shiro1$MD5$1$6pNXet6leyjI6VipEi1mTw==$v1gkTjDl8ut52qupFVB6pg",

	// $argon2id$: version
	"$argon2id$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=16$m=1024,t=2,p=1$c29tZXNhbHQ$DJkDlhYQjMAOfRGtyek9T6PwKEE/HIKrG4LbYkikiYw",
	"$argon2id$v=019$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$V=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	// field count
	"$argon2id$",
	"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ",
	"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc$",
	// parameters: missing, reordered, extra, not decimal, out of bounds
	"$argon2id$v=19$$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=65536,t=2$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$t=2,m=65536,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=65536,t=2,p=1,keyid=AA$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=65536,t=2,p=1,$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=-1,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=65536,t=0,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=65536,t=2,p=0$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=7,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=4294967295,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=4294967296,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=65536,t=4294967295,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=65536,t=2,p=1000$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=65536,t=2,p=1 $c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	// salt: short, padded, not base64
	"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNh$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ=$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbH!$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHR$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	// hash: empty, short, padded, non-canonical
	"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$",
	"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm",
	"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc=",
	"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPd",
}

func TestMalformed(t *testing.T) {
	for _, s := range malformed {
		for _, enc := range []Encryption{EncryptionShiro1, EncryptionArgon2id} {
			v, err := ParseVerifier(enc, s)
			if !errors.Is(err, ErrBadHash) {
				t.Errorf("%v %q: %v, %v; want ErrBadHash", enc, s, v, err)
				continue
			}
			// The message says what is wrong but does not quote the
			// stored string (beyond a clipped field).
			if len(s) > 40 && strings.Contains(err.Error(), s[len(s)-20:]) {
				t.Errorf("%v: error %q quotes the stored string", enc, err)
			}
		}
	}
}

// TestDecoy: a decoy has its verifier's algorithm and cost, and verifies
// none of the passwords tried, including the real one.
func TestDecoy(t *testing.T) {
	tried := []string{"", "password", "hunter2", "pässwörd", "x", "correct horse"}
	check := func(name string, v Verifier, tried ...string) Verifier {
		t.Helper()
		d := v.Decoy()
		for _, pw := range tried {
			if d.Verify(pw) {
				t.Errorf("%s: decoy verifies %q", name, pw)
			}
		}
		if d.Decoy() == nil {
			t.Errorf("%s: decoy of a decoy is nil", name)
		}
		return d
	}
	for _, pw := range tried {
		v, _ := ParseVerifier(EncryptionNone, pw)
		d := check("NONE "+pw, v, tried...)
		if _, ok := d.(*plain); !ok {
			t.Errorf("NONE decoy is a %T", d)
		}
	}
	for _, tc := range argon2Vectors[1:] {
		v, err := ParseVerifier(EncryptionArgon2id, tc.hash)
		if err != nil {
			t.Fatal(err)
		}
		d := check(tc.hash, v, tc.password, "").(*argon2id)
		a := v.(*argon2id)
		if d.params != a.params || len(d.salt) != len(a.salt) || len(d.hash) != len(a.hash) {
			t.Errorf("decoy of %s is %s: other parameters", a, d)
		}
		if string(d.salt) == string(a.salt) || string(d.hash) == string(a.hash) {
			t.Errorf("decoy of %s reuses its salt or hash", a)
		}
	}
	for _, sv := range readShiroVectors(t) {
		v, err := parseShiro1(sv.hash)
		if err != nil {
			t.Fatal(err)
		}
		if v.iterations > 1000 {
			continue // the cost is checked below; spare the hashing
		}
		d := check(sv.hash, v, sv.password, "", "hunter2").(*shiro1)
		if d.alg.name != v.alg.name || d.iterations != v.iterations || len(d.salt) != len(v.salt) || len(d.hash) != len(v.hash) {
			t.Errorf("decoy of %s is %s: other parameters", v, d)
		}
		if string(d.salt) == string(v.salt) {
			t.Errorf("decoy of %s reuses its salt", v)
		}
	}
	v, _ := parseShiro1("$shiro1$SHA-256$500000$QersHNIlNoqaD+gVK3Q4ug==$SaRtTRTRVMhLEyYDg4sOo5eo/pPfnCUuIfwzgO4BxX0=")
	if d := v.Decoy().(*shiro1); d.iterations != 500000 || d.alg.name != "SHA-256" {
		t.Errorf("decoy of %s is %s", v, d)
	}
}

// FuzzParseVerifier feeds hostile stored passwords to every encryption:
// no panic, and whatever parses stays within its bounds, prints back in a
// form that parses to the same verifier, and verifies (and decoys) without
// trouble. Verify runs only where the cost is small, to keep the fuzzer
// fast; the bounds themselves are what keep the rest finite.
func FuzzParseVerifier(f *testing.F) {
	for _, s := range malformed {
		f.Add(s, "hunter2")
	}
	for _, v := range argon2Vectors {
		f.Add(v.hash, v.password)
	}
	f.Add("$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "password")
	f.Add("$shiro1$MD5$1$U5kMD3TeY/F6ZYCHR1C5AQ==$1NJtli3sRur8ksIO4aFt+w==", "hunter2")
	f.Add("$shiro1$SHA-512$1000$Pdx/rJK8BNs6ww2LNlRswQ==$oSAgRWvPQI1EuNaVSRVo/4cRR121Ojx9JkMTxhPHnvW6MAcLIlRBP8AwuSxb1cgYcHk6JF6emZPZR3XNyYfGtQ==", "hunter2")
	f.Fuzz(func(t *testing.T, stored, password string) {
		for _, enc := range []Encryption{EncryptionNone, EncryptionShiro1, EncryptionArgon2id, Encryption(3)} {
			v, err := ParseVerifier(enc, stored)
			if err != nil {
				if !errors.Is(err, ErrBadHash) {
					t.Fatalf("%v %q: %v does not wrap ErrBadHash", enc, stored, err)
				}
				continue
			}
			cheap := true
			switch v := v.(type) {
			case *plain:
				if !v.Verify(stored) {
					t.Fatalf("NONE %q does not verify itself", stored)
				}
			case *shiro1:
				if v.iterations < 1 || v.iterations > MaxShiro1Iterations || len(v.salt) == 0 || len(v.salt) > shiro1MaxSaltLen || len(v.hash) != v.alg.size {
					t.Fatalf("%q parsed out of bounds: %s", stored, v)
				}
				if again, err := parseShiro1(v.String()); err != nil || again.String() != v.String() {
					t.Fatalf("%q: %s does not parse back: %v", stored, v, err)
				}
				cheap = v.iterations <= 1000
			case *argon2id:
				if err := v.params.check(); err != nil {
					t.Fatalf("%q parsed out of bounds: %v", stored, err)
				}
				if again, err := parseArgon2id(v.String()); err != nil || again.String() != v.String() {
					t.Fatalf("%q: %s does not parse back: %v", stored, v, err)
				}
				cheap = uint64(v.params.Memory)*uint64(v.params.Time) <= 1024
			default:
				t.Fatalf("%v %q: a %T", enc, stored, v)
			}
			if cheap {
				v.Verify(password)
				if v.Decoy().Verify(password) {
					t.Fatalf("%v %q: decoy verifies %q", enc, stored, password)
				}
			}
		}
	})
}

func TestNewDecoy(t *testing.T) {
	if d, ok := NewDecoy(EncryptionNone).(*plain); !ok || d.Verify("") || d.Verify("decoy") {
		t.Errorf("NewDecoy(NONE) = %v", d)
	}
	s, ok := NewDecoy(EncryptionShiro1).(*shiro1)
	if !ok || s.alg.name != DefaultShiro1Algorithm || s.iterations != DefaultShiro1Iterations || len(s.salt) != 16 || len(s.hash) != 32 {
		t.Errorf("NewDecoy(SHIRO_1_CRYPT) = %v", s)
	}
	if _, err := parseShiro1(s.String()); err != nil {
		t.Errorf("NewDecoy(SHIRO_1_CRYPT) = %s: %v", s, err)
	}
	a, ok := NewDecoy(EncryptionArgon2id).(*argon2id)
	if !ok || a.params != DefaultArgon2Params || a.Verify("") || a.Verify("password") {
		t.Errorf("NewDecoy(ARGON2ID) = %v", a)
	}
	if _, err := parseArgon2id(a.String()); err != nil {
		t.Errorf("NewDecoy(ARGON2ID) = %s: %v", a, err)
	}
}
