package auth

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// The PHC string form of argon2id, as the reference implementation
// (phc-winner-argon2, its argon2 command and libargon2's encoded hashes)
// writes it:
//
//	$argon2id$v=19$m=<memory KiB>,t=<passes>,p=<lanes>$<salt>$<hash>
//
// with salt and hash in standard base64 without padding. Only version 19
// (0x13, the RFC 9106 version) is accepted, and only the parameters m, t
// and p, in that order (no keyid or data).
const argon2idPrefix = "$argon2id$"

// argon2Version is the one argon2 version x/crypto implements.
const argon2Version = 19

// Argon2Params are the cost and sizes of an argon2id hash. The zero value
// of each field means its value in DefaultArgon2Params. HashArgon2id
// rejects, and a stored $argon2id$ string is malformed with, a value
// outside the bounds given: they keep one login's memory and time bounded
// whatever a data source holds.
type Argon2Params struct {
	// Memory is the memory cost in KiB (m), from 8*Threads to 1,048,576
	// (1 GiB). Verifying allocates this much.
	Memory uint32
	// Time is the number of passes over the memory (t), from 1 to 32.
	Time uint32
	// Threads is the degree of parallelism (p), from 1 to 255. It is part
	// of the hash: verifying with other Threads gives another hash.
	Threads uint8
	// SaltLen is the length in bytes of the random salt, from 8 to 64.
	SaltLen uint32
	// KeyLen is the length in bytes of the hash (the tag), from 16 to 64.
	KeyLen uint32
}

// DefaultArgon2Params is OWASP's recommended argon2id configuration (the
// Password Storage Cheat Sheet's first option: 19 MiB, 2 passes, one
// lane) with RFC 9106's 16-byte salt and a 32-byte hash. The memory is
// modest on purpose: every login of every client costs a server this much
// at once, and OWASP's five options (from m=47104,t=1 to m=7168,t=5) are
// meant to be equally strong; raise Memory before Time where the server
// can afford it. One lane because a login is already one of many
// concurrent requests: more lanes spread one login over more cores, but
// do not make it cost an attacker more.
var DefaultArgon2Params = Argon2Params{
	Memory:  19 * 1024,
	Time:    2,
	Threads: 1,
	SaltLen: 16,
	KeyLen:  32,
}

const (
	argon2MaxMemory  = 1 << 20 // KiB: 1 GiB
	argon2MaxTime    = 32
	argon2MinSaltLen = 8 // RFC 9106 §3.1
	argon2MaxSaltLen = 64
	argon2MinKeyLen  = 16 // shorter tags let a random password match too often
	argon2MaxKeyLen  = 64
)

// withDefaults returns p with each zero field set from DefaultArgon2Params.
func (p Argon2Params) withDefaults() Argon2Params {
	d := DefaultArgon2Params
	if p.Memory == 0 {
		p.Memory = d.Memory
	}
	if p.Time == 0 {
		p.Time = d.Time
	}
	if p.Threads == 0 {
		p.Threads = d.Threads
	}
	if p.SaltLen == 0 {
		p.SaltLen = d.SaltLen
	}
	if p.KeyLen == 0 {
		p.KeyLen = d.KeyLen
	}
	return p
}

// check reports the first field of p out of bounds; p has no zero field.
func (p Argon2Params) check() error {
	switch {
	case p.Threads < 1:
		return fmt.Errorf("p=%d: want 1 to 255", p.Threads)
	case p.Memory < 8*uint32(p.Threads) || p.Memory > argon2MaxMemory:
		return fmt.Errorf("m=%d: want %d (8 KiB per lane) to %d KiB", p.Memory, 8*uint32(p.Threads), argon2MaxMemory)
	case p.Time < 1 || p.Time > argon2MaxTime:
		return fmt.Errorf("t=%d: want 1 to %d", p.Time, argon2MaxTime)
	case p.SaltLen < argon2MinSaltLen || p.SaltLen > argon2MaxSaltLen:
		return fmt.Errorf("salt of %d bytes: want %d to %d", p.SaltLen, argon2MinSaltLen, argon2MaxSaltLen)
	case p.KeyLen < argon2MinKeyLen || p.KeyLen > argon2MaxKeyLen:
		return fmt.Errorf("hash of %d bytes: want %d to %d", p.KeyLen, argon2MinKeyLen, argon2MaxKeyLen)
	}
	return nil
}

// argon2id is a parsed $argon2id$ string. Immutable.
type argon2id struct {
	params Argon2Params // SaltLen and KeyLen are len(salt) and len(hash)
	salt   []byte
	hash   []byte
}

// parseArgon2id parses s, which starts with argon2idPrefix and is at most
// maxStored bytes.
func parseArgon2id(s string) (*argon2id, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrBadHash, argon2idPrefix, fmt.Sprintf(format, args...))
	}
	fields := strings.Split(strings.TrimPrefix(s, argon2idPrefix), "$")
	if len(fields) == 3 && strings.HasPrefix(fields[0], "m=") {
		return nil, bad("no v=%d (version 16, the one before RFC 9106, is not supported)", argon2Version)
	}
	if len(fields) != 4 {
		return nil, bad("v=19$m=,t=,p=$salt$hash: %d fields, want 4", len(fields))
	}
	if fields[0] != "v="+strconv.Itoa(argon2Version) {
		return nil, bad("version %s: want v=%d", clip(fields[0]), argon2Version)
	}
	kv := strings.Split(fields[1], ",")
	if len(kv) != 3 {
		return nil, bad("parameters %s: want m=<KiB>,t=<passes>,p=<lanes>", clip(fields[1]))
	}
	var vals [3]uint64
	for i, key := range [3]string{"m=", "t=", "p="} {
		v, found := strings.CutPrefix(kv[i], key)
		n, ok := parseDecimal(v, 1, 1<<32-1)
		if !found || !ok {
			return nil, bad("parameter %d %s: want %s<decimal>", i+1, clip(kv[i]), key)
		}
		vals[i] = n
	}
	if vals[2] > 255 {
		return nil, bad("p=%d: want 1 to 255", vals[2])
	}
	p := Argon2Params{Memory: uint32(vals[0]), Time: uint32(vals[1]), Threads: uint8(vals[2])}
	enc := base64.RawStdEncoding.Strict()
	if len(fields[2]) > enc.EncodedLen(argon2MaxSaltLen) || len(fields[3]) > enc.EncodedLen(argon2MaxKeyLen) {
		return nil, bad("salt or hash longer than %d bytes", argon2MaxKeyLen)
	}
	salt, err := enc.DecodeString(fields[2])
	if err != nil {
		return nil, bad("salt is not unpadded standard base64")
	}
	sum, err := enc.DecodeString(fields[3])
	if err != nil {
		return nil, bad("hash is not unpadded standard base64")
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(sum))
	if err := p.check(); err != nil {
		return nil, bad("%v", err)
	}
	return &argon2id{params: p, salt: salt, hash: sum}, nil
}

func (v *argon2id) Verify(password string) bool {
	p := v.params
	sum := argon2.IDKey([]byte(password), v.salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(sum, v.hash) == 1
}

// Decoy returns a verifier with v's m, t, p and lengths, and a random salt
// and hash.
func (v *argon2id) Decoy() Verifier {
	return &argon2id{params: v.params, salt: randomBytes(len(v.salt)), hash: randomBytes(len(v.hash))}
}

func (v *argon2id) String() string {
	p := v.params
	return fmt.Sprintf("%sv=%d$m=%d,t=%d,p=%d$%s$%s", argon2idPrefix, argon2Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(v.salt), base64.RawStdEncoding.EncodeToString(v.hash))
}

// HashArgon2id hashes password with argon2id and a random salt, and
// returns it in PHC string form, which ParseVerifier reads for both the
// ARGON2ID and the SHIRO_1_CRYPT data sources. Zero fields of p take their
// value in DefaultArgon2Params; a field out of its bounds is an error.
func HashArgon2id(password string, p Argon2Params) (string, error) {
	if password == "" {
		return "", ErrEmptyPassword
	}
	p = p.withDefaults()
	if err := p.check(); err != nil {
		return "", fmt.Errorf("auth: argon2id %w", err)
	}
	v := &argon2id{params: p, salt: randomBytes(int(p.SaltLen))}
	v.hash = argon2.IDKey([]byte(password), v.salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return v.String(), nil
}
