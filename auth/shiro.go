package auth

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Apache Shiro 1.x's Shiro1CryptFormat, as its DefaultPasswordService
// writes it:
//
//	$shiro1$<algorithm>$<iterations>$<base64 salt>$<base64 hash>
//
// where hash = ALG(salt || UTF-8 password), then hash = ALG(hash) another
// iterations-1 times (Shiro's SimpleHash), and the base64 is the standard
// alphabet with padding. DefaultPasswordService adds no private salt and
// makes a 16-byte random salt. Checked against the Shiro 1.3.2 sources and
// against vectors Shiro made (testdata/shiro1/README.md).
const shiro1Prefix = "$shiro1$"

const (
	// DefaultShiro1Algorithm and DefaultShiro1Iterations are the defaults
	// of HashShiro1, and those of Shiro 1.x's DefaultPasswordService.
	DefaultShiro1Algorithm  = "SHA-256"
	DefaultShiro1Iterations = 500_000

	// MaxShiro1Iterations bounds the iterations of a $shiro1$ string
	// accepted or made, so that a hostile stored password cannot make a
	// login hash forever: 10,000,000 SHA-512 iterations take a few
	// seconds.
	MaxShiro1Iterations = 10_000_000

	shiro1SaltLen    = 16  // the salt HashShiro1 makes, as Shiro does
	shiro1MaxSaltLen = 256 // the longest salt accepted
)

// shiro1Alg is a MessageDigest algorithm Shiro can name: the five it has a
// Hash class for (Md5Hash, Sha1Hash, Sha256Hash, Sha384Hash, Sha512Hash).
type shiro1Alg struct {
	name string // as Java's MessageDigest names it
	new  func() hash.Hash
	size int
}

var shiro1Algs = []shiro1Alg{
	{"SHA-256", sha256.New, sha256.Size},
	{"SHA-512", sha512.New, sha512.Size},
	{"SHA-384", sha512.New384, sha512.Size384},
	{"SHA-1", sha1.New, sha1.Size},
	{"MD5", md5.New, md5.Size},
}

// lookupShiro1Alg finds an algorithm by name, ignoring case as Java's
// MessageDigest.getInstance does.
func lookupShiro1Alg(name string) (shiro1Alg, bool) {
	for _, a := range shiro1Algs {
		if strings.EqualFold(a.name, name) {
			return a, true
		}
	}
	return shiro1Alg{}, false
}

// shiro1 is a parsed $shiro1$ string. Immutable.
type shiro1 struct {
	alg        shiro1Alg
	iterations int
	salt       []byte
	hash       []byte // alg.size bytes
}

// parseShiro1 parses s, which starts with shiro1Prefix and is at most
// maxStored bytes. It is stricter than Shiro where Shiro would accept a
// string it can never verify: an empty salt (DefaultPasswordService then
// hashes with a fresh random salt), or a hash of the wrong size.
func parseShiro1(s string) (*shiro1, error) {
	fields := strings.Split(strings.TrimPrefix(s, shiro1Prefix), "$")
	if len(fields) != 4 {
		return nil, fmt.Errorf("%w: %salgorithm$iterations$salt$hash: %d fields, want 4", ErrBadHash, shiro1Prefix, len(fields))
	}
	alg, ok := lookupShiro1Alg(fields[0])
	if !ok {
		return nil, fmt.Errorf("%w: %s: algorithm %s: want SHA-256, SHA-512, SHA-384, SHA-1 or MD5", ErrBadHash, shiro1Prefix, clip(fields[0]))
	}
	it, ok := parseDecimal(fields[1], 1, MaxShiro1Iterations)
	if !ok {
		return nil, fmt.Errorf("%w: %s: iterations %s: want a decimal number from 1 to %d", ErrBadHash, shiro1Prefix, clip(fields[1]), MaxShiro1Iterations)
	}
	if fields[2] == "" {
		return nil, fmt.Errorf("%w: %s: no salt (Shiro cannot verify an unsalted hash either)", ErrBadHash, shiro1Prefix)
	}
	if len(fields[2]) > base64.StdEncoding.EncodedLen(shiro1MaxSaltLen) {
		return nil, fmt.Errorf("%w: %s: salt longer than %d bytes", ErrBadHash, shiro1Prefix, shiro1MaxSaltLen)
	}
	salt, err := base64.StdEncoding.Strict().DecodeString(fields[2])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: salt is not padded standard base64", ErrBadHash, shiro1Prefix)
	}
	if len(salt) > shiro1MaxSaltLen {
		return nil, fmt.Errorf("%w: %s: salt longer than %d bytes", ErrBadHash, shiro1Prefix, shiro1MaxSaltLen)
	}
	if len(fields[3]) != base64.StdEncoding.EncodedLen(alg.size) {
		return nil, fmt.Errorf("%w: %s: %s hash is not %d bytes of padded base64", ErrBadHash, shiro1Prefix, alg.name, alg.size)
	}
	sum, err := base64.StdEncoding.Strict().DecodeString(fields[3])
	if err != nil || len(sum) != alg.size {
		return nil, fmt.Errorf("%w: %s: %s hash is not %d bytes of padded base64", ErrBadHash, shiro1Prefix, alg.name, alg.size)
	}
	return &shiro1{alg: alg, iterations: int(it), salt: salt, hash: sum}, nil
}

// sum computes Shiro's SimpleHash of password under v's algorithm, salt
// and iterations.
func (v *shiro1) sum(password string) []byte {
	h := v.alg.new()
	h.Write(v.salt)
	h.Write([]byte(password))
	out := h.Sum(make([]byte, 0, v.alg.size))
	for i := 1; i < v.iterations; i++ {
		h.Reset()
		h.Write(out)
		out = h.Sum(out[:0])
	}
	return out
}

func (v *shiro1) Verify(password string) bool {
	return subtle.ConstantTimeCompare(v.sum(password), v.hash) == 1
}

// Decoy returns a verifier with v's algorithm, iterations and salt length,
// and a random salt and hash.
func (v *shiro1) Decoy() Verifier {
	return &shiro1{alg: v.alg, iterations: v.iterations, salt: randomBytes(len(v.salt)), hash: randomBytes(v.alg.size)}
}

func (v *shiro1) String() string {
	return shiro1Prefix + v.alg.name + "$" + strconv.Itoa(v.iterations) + "$" +
		base64.StdEncoding.EncodeToString(v.salt) + "$" + base64.StdEncoding.EncodeToString(v.hash)
}

// HashShiro1 hashes password in Shiro's $shiro1$ format with a random
// 16-byte salt, as Shiro 1.x's DefaultPasswordService does, for a data
// source that Shiro or Corda also reads. alg is one of SHA-256, SHA-512,
// SHA-384, SHA-1 or MD5 ("" is DefaultShiro1Algorithm); iterations is from
// 1 to MaxShiro1Iterations (0 is DefaultShiro1Iterations). Prefer
// HashArgon2id where only hawser reads the source: an iterated SHA is cheap
// to attack on a GPU.
func HashShiro1(password, alg string, iterations int) (string, error) {
	if password == "" {
		return "", ErrEmptyPassword
	}
	if alg == "" {
		alg = DefaultShiro1Algorithm
	}
	a, ok := lookupShiro1Alg(alg)
	if !ok {
		return "", fmt.Errorf("auth: shiro1 algorithm %s: want SHA-256, SHA-512, SHA-384, SHA-1 or MD5", clip(alg))
	}
	if iterations == 0 {
		iterations = DefaultShiro1Iterations
	}
	if iterations < 1 || iterations > MaxShiro1Iterations {
		return "", fmt.Errorf("auth: shiro1 iterations %d: want 1 to %d", iterations, MaxShiro1Iterations)
	}
	v := &shiro1{alg: a, iterations: iterations, salt: randomBytes(shiro1SaltLen)}
	v.hash = v.sum(password)
	return v.String(), nil
}

// clip quotes a field of a stored string for an error message, cut to a
// few bytes: enough to see what is wrong, too short to carry a hash.
func clip(s string) string {
	const n = 16
	if len(s) > n {
		return strconv.Quote(s[:n]) + "..."
	}
	return strconv.Quote(s)
}
