package auth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
)

// countingSource is a changeable Source that counts lookups.
type countingSource struct {
	mu      sync.Mutex
	users   map[string]User
	lookups atomic.Int64
	fail    error
}

func (c *countingSource) User(_ context.Context, name string) (User, bool, error) {
	c.lookups.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return User{}, false, c.fail
	}
	u, ok := c.users[name]
	return u, ok, nil
}

func (c *countingSource) set(name, password string, perms ...string) {
	p, err := ParsePermissions(perms)
	if err != nil {
		panic(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.users[name] = User{Name: name, Password: password, Permissions: p}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func tcp(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000} }

// An unknown user and a wrong password get the same error after the same
// work: the unknown user's password is checked against the decoy.
func TestLoginUniformFailure(t *testing.T) {
	src := &countingSource{users: map[string]User{}}
	src.set("alice", "right", "ALL")
	svc, err := New(Config{Source: src, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	var decoys, real atomic.Int32
	svc.onVerify = func(decoy bool) {
		if decoy {
			decoys.Add(1)
		} else {
			real.Add(1)
		}
	}
	ctx := context.Background()
	_, wrong := svc.Login(ctx, tcp("10.0.0.1"), "alice", "wrong")
	_, unknown := svc.Login(ctx, tcp("10.0.0.1"), "mallory", "right")
	if !errors.Is(wrong, hawser.ErrLoginFailed) || !errors.Is(unknown, hawser.ErrLoginFailed) || wrong.Error() != unknown.Error() {
		t.Fatalf("wrong password: %v; unknown user: %v", wrong, unknown)
	}
	if decoys.Load() != 1 || real.Load() != 1 {
		t.Fatalf("verifications: %d decoy, %d real; want one each", decoys.Load(), real.Load())
	}
	sess, err := svc.Login(ctx, tcp("10.0.0.1"), "alice", "right")
	if err != nil || sess.User() != "alice" {
		t.Fatalf("right password: %v", err)
	}
}

// The limit trips after Failures failures from one address, refuses the
// right password too during the lockout without checking it, leaves other
// addresses alone, and recovers after the lockout.
func TestLoginLimitTripsAndRecovers(t *testing.T) {
	src := &countingSource{users: map[string]User{}}
	src.set("alice", "right", "ALL")
	svc, err := New(Config{Source: src, Logger: quiet(), Limit: LoginLimit{Failures: 3, Window: time.Minute, Lockout: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	svc.now = func() time.Time { return now }
	ctx := context.Background()
	attacker := tcp("10.0.0.1")
	for i := range 3 {
		if _, err := svc.Login(ctx, attacker, "alice", "guess"); !errors.Is(err, hawser.ErrLoginFailed) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	before := src.lookups.Load()
	if _, err := svc.Login(ctx, attacker, "alice", "right"); !errors.Is(err, hawser.ErrLoginLimited) {
		t.Fatalf("during the lockout: %v", err)
	}
	if src.lookups.Load() != before {
		t.Fatal("a locked-out login reached the data source")
	}
	if _, err := svc.Login(ctx, tcp("10.0.0.2"), "alice", "right"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	now = now.Add(30 * time.Second)
	if _, err := svc.Login(ctx, attacker, "alice", "right"); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
	// Failures spread wider than the window do not lock.
	for range 5 {
		now = now.Add(time.Minute)
		if _, err := svc.Login(ctx, attacker, "alice", "guess"); !errors.Is(err, hawser.ErrLoginFailed) {
			t.Fatalf("spread failures: %v", err)
		}
	}
	if st := svc.Stats(); st.Limited != 1 || st.Failed != 8 || st.Logins != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// IPv6 addresses of one /64 count as one source.
func TestLoginLimitIPv6Prefix(t *testing.T) {
	if a, b := sourceKey(tcp("2001:db8::1")), sourceKey(tcp("2001:db8::ffff:1")); a != b {
		t.Fatalf("%s != %s", a, b)
	}
	if a, b := sourceKey(tcp("2001:db8:0:1::1")), sourceKey(tcp("2001:db8:0:2::1")); a == b {
		t.Fatal("two /64s share a key")
	}
	if sourceKey(tcp("::ffff:10.0.0.1")) != "10.0.0.1" {
		t.Fatal("a mapped IPv4 address is not its IPv4 address")
	}
}

// A failing data source is ErrUnavailable, not a failed login, and does
// not count toward the limit.
func TestLoginSourceDown(t *testing.T) {
	src := &countingSource{users: map[string]User{}, fail: errors.New("connection refused")}
	svc, err := New(Config{Source: src, Logger: quiet(), Limit: LoginLimit{Failures: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := svc.Login(context.Background(), tcp("10.0.0.1"), "alice", "x"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v", err)
		}
	}
}

// Permissions are read at each check: a change in the source takes effect
// at once; behind Cached, after ExpireAfter, and a second login within it
// does not reach the source.
func TestSessionSeesChanges(t *testing.T) {
	src := &countingSource{users: map[string]User{}}
	src.set("alice", "right", "InvokeRpc.kv.Get")
	ctx := context.Background()
	t.Run("no cache", func(t *testing.T) {
		svc, err := New(Config{Source: src, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		sess, err := svc.Login(ctx, tcp("10.0.0.1"), "alice", "right")
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(sess.CheckMethod(ctx, "kv.Put"), hawser.ErrPermissionDenied) {
			t.Fatal("kv.Put allowed")
		}
		src.set("alice", "right", "InvokeRpc.kv.Get", "InvokeRpc.kv.Put")
		if err := sess.CheckMethod(ctx, "kv.Put"); err != nil {
			t.Fatalf("after the grant: %v", err)
		}
		src.set("alice", "right")
		if !errors.Is(sess.CheckMethod(ctx, "kv.Get"), hawser.ErrPermissionDenied) {
			t.Fatal("kv.Get allowed after the revocation")
		}
		src.set("alice", "right", "InvokeRpc.kv.Get")
	})
	t.Run("cache", func(t *testing.T) {
		cached := NewCached(src, CacheConfig{ExpireAfter: 200 * time.Millisecond})
		svc, err := New(Config{Source: cached, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		before := src.lookups.Load()
		for i := range 2 {
			if _, err := svc.Login(ctx, tcp("10.0.0.1"), "alice", "right"); err != nil {
				t.Fatalf("login %d: %v", i, err)
			}
		}
		if got := src.lookups.Load() - before; got != 1 {
			t.Fatalf("two logins made %d lookups, want 1", got)
		}
		sess, _ := svc.Login(ctx, tcp("10.0.0.1"), "alice", "right")
		src.set("alice", "right", "InvokeRpc.kv.Get", "InvokeRpc.kv.Put")
		if !errors.Is(sess.CheckMethod(ctx, "kv.Put"), hawser.ErrPermissionDenied) {
			t.Fatal("the grant took effect before the cache expired")
		}
		deadline := time.Now().Add(10 * time.Second)
		for sess.CheckMethod(ctx, "kv.Put") != nil {
			if time.Now().After(deadline) {
				t.Fatal("the grant never took effect")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// blockingSource holds every lookup until released, counting how many wait
// at once.
type blockingSource struct {
	release chan struct{}
	now     atomic.Int32
	peak    atomic.Int32
}

func (b *blockingSource) User(ctx context.Context, _ string) (User, bool, error) {
	n := b.now.Add(1)
	defer b.now.Add(-1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return User{}, false, nil
}

// At most MaxVerifications logins reach the source and hash at once; the
// others wait, and one whose context ends gives up with ctx's error.
func TestLoginVerificationsBounded(t *testing.T) {
	src := &blockingSource{release: make(chan struct{})}
	svc, err := New(Config{Source: src, MaxVerifications: 2, Limit: LoginLimit{Failures: -1}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = svc.Login(context.Background(), tcp("10.0.0.1"), "u", "p")
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for src.now.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the first two logins never reached the source")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := svc.Login(ctx, tcp("10.0.0.2"), "u", "p"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a login waiting for a slot: %v", err)
	}
	close(src.release)
	wg.Wait()
	if p := src.peak.Load(); p != 2 {
		t.Fatalf("%d lookups at once, want 2", p)
	}
}
