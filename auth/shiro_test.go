package auth

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

type shiroVector struct {
	line     int
	hash     string
	password string
}

// readShiroVectors reads testdata/shiro1/vectors.txt: hashes made by
// Apache Shiro itself (see testdata/shiro1/README.md).
func readShiroVectors(t testing.TB) []shiroVector {
	t.Helper()
	f, err := os.Open("testdata/shiro1/vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []shiroVector
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		hash, pw, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("vectors.txt:%d: no tab", n)
		}
		vs = append(vs, shiroVector{n, hash, pw})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

// TestShiro1Vectors: every hash Shiro made verifies with its password and
// not with others, under both hashed encryptions, and prints back as Shiro
// wrote it.
func TestShiro1Vectors(t *testing.T) {
	vs := readShiroVectors(t)
	// The file must cover what README.md says it does.
	seen := map[string]bool{}
	for _, v := range vs {
		s, err := parseShiro1(v.hash)
		if err != nil {
			t.Fatalf("vectors.txt:%d: %v", v.line, err)
		}
		seen[s.alg.name] = true
		seen["iterations="+strconv.Itoa(s.iterations)] = true
		if v.password == "" {
			seen["empty"] = true
		}
		if strings.ContainsFunc(v.password, func(r rune) bool { return r > 0x7f }) {
			seen["non-ASCII"] = true
		}
	}
	for _, want := range []string{"SHA-256", "SHA-512", "SHA-1", "MD5", "iterations=1", "iterations=500000", "empty", "non-ASCII"} {
		if !seen[want] {
			t.Errorf("vectors.txt has no vector with %s", want)
		}
	}
	if len(vs) < 80 {
		t.Errorf("vectors.txt has %d vectors, want at least 80", len(vs))
	}

	for _, v := range vs {
		t.Run(strconv.Itoa(v.line), func(t *testing.T) {
			t.Parallel()
			for _, enc := range []Encryption{EncryptionShiro1, EncryptionArgon2id} {
				ver, err := ParseVerifier(enc, v.hash)
				if err != nil {
					t.Fatalf("%v: %v", enc, err)
				}
				if enc == EncryptionArgon2id {
					continue // the same verifier: hash once
				}
				if !ver.Verify(v.password) {
					t.Errorf("%s does not verify %q", v.hash, v.password)
				}
				// Wrong passwords run the same loop as the right one:
				// spare the race detector 500,000 iterations more.
				if ver.(*shiro1).iterations <= 1000 {
					for _, wrong := range []string{v.password + "x", "hunter3"} {
						if ver.Verify(wrong) {
							t.Errorf("%s verifies %q", v.hash, wrong)
						}
					}
				}
				if got := ver.(*shiro1).String(); got != v.hash {
					t.Errorf("String() = %s, want %s", got, v.hash)
				}
			}
		})
	}
}

// TestShiro1NotPlain: a NONE source takes a $shiro1$ string as the plain
// password it is.
func TestShiro1NotPlain(t *testing.T) {
	v := readShiroVectors(t)[0]
	ver, err := ParseVerifier(EncryptionNone, v.hash)
	if err != nil {
		t.Fatal(err)
	}
	if ver.Verify(v.password) || !ver.Verify(v.hash) {
		t.Errorf("NONE: %s is not compared as plain text", v.hash)
	}
}

func TestHashShiro1(t *testing.T) {
	for _, tc := range []struct {
		alg        string
		iterations int
		wantAlg    string
		wantIter   int
	}{
		{"", 0, "SHA-256", DefaultShiro1Iterations},
		{"SHA-512", 1, "SHA-512", 1},
		{"sha-384", 7, "SHA-384", 7},
		{"SHA-1", 2, "SHA-1", 2},
		{"MD5", 1000, "MD5", 1000},
	} {
		s, err := HashShiro1("pässword", tc.alg, tc.iterations)
		if err != nil {
			t.Fatalf("HashShiro1(%q, %d): %v", tc.alg, tc.iterations, err)
		}
		want := shiro1Prefix + tc.wantAlg + "$" + strconv.Itoa(tc.wantIter) + "$"
		if !strings.HasPrefix(s, want) {
			t.Errorf("HashShiro1(%q, %d) = %s, want prefix %s", tc.alg, tc.iterations, s, want)
		}
		v, err := ParseVerifier(EncryptionShiro1, s)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Verify("pässword") || v.Verify("password") {
			t.Errorf("%s: round trip failed", s)
		}
		if n := len(v.(*shiro1).salt); n != 16 {
			t.Errorf("salt of %d bytes, want 16", n)
		}
	}
	a, _ := HashShiro1("pw", "SHA-256", 1)
	b, _ := HashShiro1("pw", "SHA-256", 1)
	if a == b {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	for _, tc := range []struct {
		pw, alg string
		it      int
	}{
		{"pw", "SHA-3", 1},
		{"pw", "SHA256", 1},
		{"pw", "SHA-256", -1},
		{"pw", "SHA-256", MaxShiro1Iterations + 1},
	} {
		if s, err := HashShiro1(tc.pw, tc.alg, tc.it); err == nil {
			t.Errorf("HashShiro1(%q, %q, %d) = %s, want an error", tc.pw, tc.alg, tc.it, s)
		}
	}
	if _, err := HashShiro1("", "", 0); !errors.Is(err, ErrEmptyPassword) {
		t.Errorf("HashShiro1 of an empty password: %v, want ErrEmptyPassword", err)
	}
}

func TestShiro1Bounds(t *testing.T) {
	ok := "$shiro1$SHA-256$" + strconv.Itoa(MaxShiro1Iterations) + "$AAAAAAAAAAAAAAAAAAAAAA==$" + strings.Repeat("A", 43) + "="
	if _, err := ParseVerifier(EncryptionShiro1, ok); err != nil {
		t.Errorf("MaxShiro1Iterations: %v", err)
	}
	over := strings.Replace(ok, strconv.Itoa(MaxShiro1Iterations), strconv.Itoa(MaxShiro1Iterations+1), 1)
	if _, err := ParseVerifier(EncryptionShiro1, over); !errors.Is(err, ErrBadHash) {
		t.Errorf("MaxShiro1Iterations+1: %v, want ErrBadHash", err)
	}
	salt256 := "$shiro1$MD5$1$" + strings.Repeat("A", 340) + "AA==$" + strings.Repeat("A", 22) + "=="
	if _, err := ParseVerifier(EncryptionShiro1, salt256); err != nil {
		t.Errorf("256-byte salt: %v", err)
	}
	salt257 := "$shiro1$MD5$1$" + strings.Repeat("A", 340) + "AAA=$" + strings.Repeat("A", 22) + "=="
	if _, err := ParseVerifier(EncryptionShiro1, salt257); !errors.Is(err, ErrBadHash) {
		t.Errorf("257-byte salt: %v, want ErrBadHash", err)
	}
}
