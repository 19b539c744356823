package auth

import (
	"context"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// CacheConfig is options.cache: how long, and how many, users read from a
// data source are kept before it is asked again.
type CacheConfig struct {
	// ExpireAfter is expire-after-secs: an entry is dropped this long after
	// it was read. Required (positive).
	ExpireAfter time.Duration
	// MaxEntries is max-entries: the least recently used entry is dropped
	// beyond it. Default 10,000.
	MaxEntries int
}

// DefaultCacheEntries is CacheConfig.MaxEntries' default.
const DefaultCacheEntries = 10000

// Cached is a Source in front of another that keeps what it returns
// (users found and users not found) for ExpireAfter in an expiring LRU:
// a login, or a permission check, within that time does not reach the
// source, and a change in the source takes effect when the entry expires.
// Source failures are not cached.
type Cached struct {
	src   Source
	cache *expirable.LRU[string, cachedUser]
}

type cachedUser struct {
	u     User
	found bool
}

// NewCached puts a cache in front of src.
func NewCached(src Source, cfg CacheConfig) *Cached {
	n := cfg.MaxEntries
	if n <= 0 {
		n = DefaultCacheEntries
	}
	return &Cached{src: src, cache: expirable.NewLRU[string, cachedUser](n, nil, cfg.ExpireAfter)}
}

// User implements Source.
func (c *Cached) User(ctx context.Context, name string) (User, bool, error) {
	if e, ok := c.cache.Get(name); ok {
		return e.u, e.found, nil
	}
	u, found, err := c.src.User(ctx, name)
	if err != nil {
		return User{}, false, err
	}
	c.cache.Add(name, cachedUser{u: u, found: found})
	return u, found, nil
}

// Purge drops every entry: the next lookups reach the source.
func (c *Cached) Purge() { c.cache.Purge() }
