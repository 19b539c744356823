package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// User is what a data source knows about one user.
type User struct {
	Name string
	// Password is the stored password: plain text (NONE) or a hash string
	// ($shiro1$..., $argon2id$...), as the data source's
	// password-encryption says.
	Password string
	// Permissions are the user's permissions (from its roles, for a DB).
	Permissions *Permissions
}

// Source is a data source of users (security.auth-service.data-source).
// Implementations are safe for concurrent use.
type Source interface {
	// User returns the user named name. found is false, with a nil error,
	// when there is no such user; an error is a failure of the source
	// itself (a database down), never a wrong name.
	User(ctx context.Context, name string) (u User, found bool, err error)
}

// ErrSource is wrapped by errors of a data source itself (a database that
// cannot be reached, a malformed row): a login that meets one fails, and
// the error is logged on the server, not sent to the client.
var ErrSource = errors.New("auth: data source failure")

// InMemory is a fixed set of users (rpc-users, or the INMEMORY data
// source), checked when it is built.
type InMemory struct {
	mu    sync.RWMutex
	users map[string]User
}

// UserConfig is one configured user, as in the node's YAML.
type UserConfig struct {
	Username    string   `yaml:"username"`
	Password    string   `yaml:"password"`
	Permissions []string `yaml:"permissions"`
}

// NewInMemory checks users (names unique and non-empty, permissions
// well-formed, passwords well-formed for enc) and returns the source.
func NewInMemory(enc Encryption, users []UserConfig) (*InMemory, error) {
	m := &InMemory{users: make(map[string]User, len(users))}
	for i, uc := range users {
		if uc.Username == "" {
			return nil, fmt.Errorf("auth: user %d: empty username", i+1)
		}
		if _, dup := m.users[uc.Username]; dup {
			return nil, fmt.Errorf("auth: user %q listed twice", uc.Username)
		}
		perms, err := ParsePermissions(uc.Permissions)
		if err != nil {
			return nil, fmt.Errorf("auth: user %q: %w", uc.Username, err)
		}
		if _, err := ParseVerifier(enc, uc.Password); err != nil {
			return nil, fmt.Errorf("auth: user %q: %w", uc.Username, err)
		}
		m.users[uc.Username] = User{Name: uc.Username, Password: uc.Password, Permissions: perms}
	}
	return m, nil
}

// User implements Source.
func (m *InMemory) User(_ context.Context, name string) (User, bool, error) {
	m.mu.RLock()
	u, ok := m.users[name]
	m.mu.RUnlock()
	return u, ok, nil
}

// anyVerifier returns the verifier of one of the users, or nil: the
// decoy copies its cost.
func (m *InMemory) anyVerifier(enc Encryption) Verifier {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, u := range m.users {
		if v, err := ParseVerifier(enc, u.Password); err == nil {
			return v
		}
	}
	return nil
}
