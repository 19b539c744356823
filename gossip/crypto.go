package gossip

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
)

// The envelope (PROTOCOL.md §2.1): every packet, request and response is
//
//	version u8 (envelopeV1) | nonce [12] | AES-256-GCM ciphertext and tag
//
// sealed with a key derived from a cluster key by HKDF-SHA256 (info
// keyInfo), a fresh random nonce, and as additional data the version byte
// followed by the cluster name.
const (
	envelopeV1       = 1
	nonceSize        = 12
	tagSize          = 16
	envelopeOverhead = 1 + nonceSize + tagSize
	// keyInfo is the HKDF info string of the packet key; the RPC handshake
	// uses "hawser rpc auth v1", so the two keys never coincide.
	keyInfo = "hawser gossip packet v1"
	// MinKeyLen is the shortest cluster key a Keyring accepts.
	MinKeyLen = 16
)

// Keyring errors.
var (
	ErrKeyTooShort = errors.New("gossip: cluster key shorter than 16 bytes")
	ErrKeyUnknown  = errors.New("gossip: key not in the keyring")
	ErrKeyPrimary  = errors.New("gossip: the primary key cannot be removed")
	// errOpen is any envelope that does not decrypt with any key.
	errOpen = errors.New("gossip: envelope does not decrypt")
)

// Keyring holds the cluster keys gossip encrypts with: the primary key
// seals every outgoing packet; on receipt the primary is tried first, then
// the secondary keys. Rotating the key of a running cluster without a
// single failed packet takes three steps, each done on every node before
// the next starts: AddKey(new); UseKey(new); RemoveKey(old).
//
// A Keyring is safe for concurrent use; one may be shared by several nodes
// of a simulation.
type Keyring struct {
	mu   sync.RWMutex
	keys []ringKey // keys[0] is the primary
}

type ringKey struct {
	raw  []byte // the cluster key, to find it again
	aead cipher.AEAD
}

// NewKeyring returns a keyring with a primary key and optional secondary
// keys (cluster keys of at least MinKeyLen bytes; the packet keys are
// derived from them).
func NewKeyring(primary []byte, secondary ...[]byte) (*Keyring, error) {
	k := &Keyring{}
	for _, raw := range append([][]byte{primary}, secondary...) {
		if err := k.AddKey(raw); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func deriveKey(raw []byte) (ringKey, error) {
	if len(raw) < MinKeyLen {
		return ringKey{}, ErrKeyTooShort
	}
	key, err := hkdf.Key(sha256.New, raw, nil, keyInfo, 32)
	if err != nil {
		return ringKey{}, fmt.Errorf("gossip: deriving the packet key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return ringKey{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return ringKey{}, err
	}
	return ringKey{raw: bytes.Clone(raw), aead: aead}, nil
}

// AddKey installs a secondary key (a no-op if it is already installed).
func (k *Keyring) AddKey(raw []byte) error {
	rk, err := deriveKey(raw)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.indexLocked(raw) < 0 {
		k.keys = append(k.keys, rk)
	}
	return nil
}

// UseKey makes an installed key the primary; the old primary becomes a
// secondary key.
func (k *Keyring) UseKey(raw []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := k.indexLocked(raw)
	if i < 0 {
		return ErrKeyUnknown
	}
	k.keys[0], k.keys[i] = k.keys[i], k.keys[0]
	return nil
}

// RemoveKey removes a secondary key.
func (k *Keyring) RemoveKey(raw []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := k.indexLocked(raw)
	switch {
	case i < 0:
		return ErrKeyUnknown
	case i == 0:
		return ErrKeyPrimary
	}
	k.keys = append(k.keys[:i:i], k.keys[i+1:]...)
	return nil
}

// Len is the number of installed keys.
func (k *Keyring) Len() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.keys)
}

func (k *Keyring) indexLocked(raw []byte) int {
	for i, rk := range k.keys {
		if bytes.Equal(rk.raw, raw) {
			return i
		}
	}
	return -1
}

// seal appends the envelope of plaintext to dst, sealed with the primary
// key. ad is the additional data (sealAD).
func (k *Keyring) seal(dst, plaintext, ad []byte) []byte {
	k.mu.RLock()
	aead := k.keys[0].aead
	k.mu.RUnlock()
	dst = append(dst, envelopeV1)
	start := len(dst)
	dst = append(dst, make([]byte, nonceSize)...)
	nonce := dst[start : start+nonceSize]
	_, _ = rand.Read(nonce) // never fails (crypto/rand)
	return aead.Seal(dst, nonce, plaintext, ad)
}

// open decrypts an envelope into dst[:0], trying the primary key first and
// then each secondary. It returns the plaintext and the envelope's nonce
// (which aliases env).
func (k *Keyring) open(dst, env, ad []byte) (plain, nonce []byte, err error) {
	if len(env) < envelopeOverhead || env[0] != envelopeV1 {
		return nil, nil, errOpen
	}
	nonce = env[1 : 1+nonceSize]
	ct := env[1+nonceSize:]
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, rk := range k.keys {
		if p, err := rk.aead.Open(dst[:0], nonce, ct, ad); err == nil {
			return p, nonce, nil
		}
	}
	return nil, nil, errOpen
}

// sealAD is the additional data of every envelope: the version byte and the
// cluster name.
func sealAD(clusterName string) []byte {
	return append([]byte{envelopeV1}, clusterName...)
}

// replayFilter remembers the nonces of recently accepted envelopes, in two
// generations of at most replayGeneration entries each: memory is bounded
// and the maps are reused (clear keeps their buckets). An envelope older
// than both generations is accepted again; that is harmless, since a stale
// message is refuted by incarnation numbers (PROTOCOL.md §4).
type replayFilter struct {
	cur, prev map[[nonceSize]byte]struct{}
}

const replayGeneration = 4096

// seen records nonce and reports whether it was already recorded.
func (f *replayFilter) seen(nonce []byte) bool {
	if f.cur == nil {
		f.cur = map[[nonceSize]byte]struct{}{}
		f.prev = map[[nonceSize]byte]struct{}{}
	}
	key := [nonceSize]byte(nonce)
	if _, ok := f.cur[key]; ok {
		return true
	}
	if _, ok := f.prev[key]; ok {
		return true
	}
	if len(f.cur) >= replayGeneration {
		f.cur, f.prev = f.prev, f.cur
		clear(f.cur)
	}
	f.cur[key] = struct{}{}
	return false
}
