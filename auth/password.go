package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
)

// Encryption is a data source's password-encryption: how its stored
// passwords are written.
type Encryption uint8

const (
	// EncryptionNone: stored passwords are plain text, compared in
	// constant time. A stored "$argon2id$..." is the plain password
	// "$argon2id$...", not a hash.
	EncryptionNone Encryption = iota
	// EncryptionShiro1: Apache Shiro's $shiro1$ crypt format (see
	// HashShiro1). The source also accepts $argon2id$ strings, so that its
	// users can be moved to argon2id one password at a time.
	EncryptionShiro1
	// EncryptionArgon2id: argon2id in PHC string form (see HashArgon2id).
	// The source also accepts $shiro1$ strings, for users not yet moved
	// from a Shiro source.
	EncryptionArgon2id
)

// ParseEncryption reads a password-encryption value: NONE, SHIRO_1_CRYPT or
// ARGON2ID (case-insensitive); "" is NONE.
func ParseEncryption(s string) (Encryption, error) {
	switch strings.ToUpper(s) {
	case "", "NONE":
		return EncryptionNone, nil
	case "SHIRO_1_CRYPT":
		return EncryptionShiro1, nil
	case "ARGON2ID":
		return EncryptionArgon2id, nil
	}
	return 0, fmt.Errorf("auth: password-encryption %q: want NONE, SHIRO_1_CRYPT or ARGON2ID", s)
}

func (e Encryption) String() string {
	switch e {
	case EncryptionNone:
		return "NONE"
	case EncryptionShiro1:
		return "SHIRO_1_CRYPT"
	case EncryptionArgon2id:
		return "ARGON2ID"
	}
	return fmt.Sprintf("Encryption(%d)", e)
}

// ErrBadHash is wrapped by errors of ParseVerifier: a stored password that
// is not in the data source's format, or whose cost or sizes are outside
// the bounds that keep one login's work bounded (see HashShiro1 and
// Argon2Params). The error says which field is wrong but never quotes the
// stored string.
var ErrBadHash = errors.New("auth: malformed stored password")

// ErrEmptyPassword is returned by HashShiro1 and HashArgon2id for an empty
// password, which is almost always a mistake (an empty line piped in).
// Apache Shiro's DefaultPasswordService refuses to hash one too.
var ErrEmptyPassword = errors.New("auth: empty password")

// maxStored bounds the length of a stored hash string, checked before
// anything else is parsed. The longest well-formed one ($shiro1$SHA-512
// with a 256-byte salt) is under 500 bytes.
const maxStored = 1024

// Verifier checks passwords against one stored password.
type Verifier interface {
	// Verify reports whether password matches, in time that does not
	// depend on where they differ.
	Verify(password string) bool
	// Decoy returns a verifier of the same algorithm and cost that no
	// password matches: a login for an unknown user runs it, so that it
	// takes as long as a wrong password.
	Decoy() Verifier
}

// ParseVerifier parses a stored password written as enc says.
//
// For EncryptionNone, stored is the plain password: every string is valid.
// For EncryptionShiro1 and EncryptionArgon2id, stored is either a
// $shiro1$ or a $argon2id$ string, whichever its prefix says; anything else
// is an error wrapping ErrBadHash. Parsing does not hash: the cost is paid
// by Verify.
func ParseVerifier(enc Encryption, stored string) (Verifier, error) {
	switch enc {
	case EncryptionNone:
		return newPlain(stored), nil
	case EncryptionShiro1, EncryptionArgon2id:
		return parseHashed(stored)
	}
	return nil, fmt.Errorf("%w: unknown password-encryption %v", ErrBadHash, enc)
}

// NewDecoy returns a decoy at the cost of enc's new hashes (HashShiro1's
// and HashArgon2id's defaults), for a login for an unknown user before any
// stored password of the source has been seen. Once one has, its Decoy
// matches the source's real cost better.
func NewDecoy(enc Encryption) Verifier {
	switch enc {
	case EncryptionShiro1:
		a, _ := lookupShiro1Alg(DefaultShiro1Algorithm)
		return &shiro1{alg: a, iterations: DefaultShiro1Iterations, salt: randomBytes(shiro1SaltLen), hash: randomBytes(a.size)}
	case EncryptionArgon2id:
		p := DefaultArgon2Params
		return &argon2id{params: p, salt: randomBytes(int(p.SaltLen)), hash: randomBytes(int(p.KeyLen))}
	}
	return new(plain).Decoy()
}

// parseHashed dispatches a hashed stored password on its prefix.
func parseHashed(stored string) (Verifier, error) {
	if len(stored) > maxStored {
		return nil, fmt.Errorf("%w: %d bytes long, more than %d", ErrBadHash, len(stored), maxStored)
	}
	// Both formats are printable ASCII without spaces. Checking it here
	// also keeps Go's base64 decoders from skipping a \r or \n.
	for i := 0; i < len(stored); i++ {
		if c := stored[i]; c <= ' ' || c > '~' {
			return nil, fmt.Errorf("%w: byte %d is %#02x, not printable ASCII", ErrBadHash, i, c)
		}
	}
	switch {
	case strings.HasPrefix(stored, shiro1Prefix):
		return parseShiro1(stored)
	case strings.HasPrefix(stored, argon2idPrefix):
		return parseArgon2id(stored)
	}
	return nil, fmt.Errorf("%w: want a %s or %s string", ErrBadHash, shiro1Prefix, argon2idPrefix)
}

// plainKey keys the HMAC that NONE passwords are compared under. It is
// random per process: the MACs are never stored or sent.
var plainKey = randomBytes(32)

// plain is a NONE password, kept as HMAC-SHA256(plainKey, password) so
// that comparing two passwords compares two 32-byte MACs: the time taken
// depends neither on where they differ nor on the stored password's length.
type plain struct {
	mac [sha256.Size]byte
}

func newPlain(password string) *plain {
	p := new(plain)
	plainMAC(p.mac[:0], password)
	return p
}

func plainMAC(dst []byte, password string) []byte {
	m := hmac.New(sha256.New, plainKey)
	m.Write([]byte(password))
	return m.Sum(dst)
}

func (p *plain) Verify(password string) bool {
	var mac [sha256.Size]byte
	plainMAC(mac[:0], password)
	return subtle.ConstantTimeCompare(p.mac[:], mac[:]) == 1
}

// Decoy returns a plain verifier whose MAC is random: no password matches
// it but with probability 2^-256.
func (p *plain) Decoy() Verifier {
	d := new(plain)
	copy(d.mac[:], randomBytes(sha256.Size))
	return d
}

// randomBytes returns n bytes from crypto/rand, which never fails (since
// Go 1.24 it crashes the program rather than return an error).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// parseDecimal reads a decimal field of a hash string: ASCII digits only
// (no sign, no spaces), at most 10 of them, at least lo and at most hi.
func parseDecimal(s string, lo, hi uint64) (uint64, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, lo <= v && v <= hi
}
