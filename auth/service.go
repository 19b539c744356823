package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
)

// LoginLimit bounds failed logins per source address: after Failures
// failures within Window, logins from the address are refused, without
// checking the password, for Lockout. IPv4 addresses count one by one,
// IPv6 addresses by /64 (one host's range). A successful login does not
// reset the count, so a valid account cannot be used to reset a guessing
// run on another.
type LoginLimit struct {
	Failures int           // default 10; negative disables the limit
	Window   time.Duration // default 1 minute
	Lockout  time.Duration // default 1 minute
	// MaxSources bounds the addresses tracked (least recently failed are
	// forgotten first). Default 65,536.
	MaxSources int
}

// Defaults of LoginLimit and Config.
const (
	DefaultLoginFailures   = 10
	DefaultLoginWindow     = time.Minute
	DefaultLoginLockout    = time.Minute
	DefaultLoginMaxSources = 1 << 16
)

// Config configures a Service.
type Config struct {
	// Source holds the users (InMemory, DB, or either behind Cached).
	Source Source
	// Encryption is how Source's passwords are stored.
	Encryption Encryption
	// Limit bounds failed logins per source address.
	Limit LoginLimit
	// MaxVerifications bounds the logins checked at once (a data source
	// lookup and a password hash each): more wait, within their
	// handshake's deadline. It bounds the CPU and memory (argon2id's) a
	// flood of logins can take. Default GOMAXPROCS.
	MaxVerifications int
	// Logger receives one line per login and per refusal. Default
	// slog.Default().
	Logger *slog.Logger
}

// ErrUnavailable: the data source failed (a database down); the login
// neither succeeded nor counted as a failure.
var ErrUnavailable = errors.New("hawser: authentication service unavailable")

func init() {
	hawser.RegisterError("hawser.AuthUnavailable", codec.CodeUnavailable, ErrUnavailable)
}

// Service checks logins against a Source and hands out Sessions, which
// check permissions. It is safe for concurrent use.
type Service struct {
	src    Source
	enc    Encryption
	static bool // src never changes: a session keeps its permissions
	lim    LoginLimit
	log    *slog.Logger
	sem    chan struct{}
	decoy  atomic.Pointer[verifierBox]
	now    func() time.Time

	limMu   sync.Mutex
	sources *lru.Cache[string, *failures] // stale entries are ignored, and evicted by size

	logins, failed, limited atomic.Uint64

	onVerify func(decoy bool) // tests: which verifier a login ran
}

type verifierBox struct{ v Verifier }

type failures struct {
	n           int
	since       time.Time // start of the window
	lockedUntil time.Time
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Source == nil {
		return nil, errors.New("auth: a data source is required")
	}
	l := cfg.Limit
	if l.Failures == 0 {
		l.Failures = DefaultLoginFailures
	}
	if l.Window <= 0 {
		l.Window = DefaultLoginWindow
	}
	if l.Lockout <= 0 {
		l.Lockout = DefaultLoginLockout
	}
	if l.MaxSources <= 0 {
		l.MaxSources = DefaultLoginMaxSources
	}
	n := cfg.MaxVerifications
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	sources, err := lru.New[string, *failures](l.MaxSources)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	s := &Service{
		src: cfg.Source, enc: cfg.Encryption, lim: l, log: cfg.Logger,
		sem: make(chan struct{}, n), now: time.Now, sources: sources,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	_, s.static = cfg.Source.(*InMemory)
	d := NewDecoy(cfg.Encryption)
	if m, ok := cfg.Source.(*InMemory); ok {
		if v := m.anyVerifier(cfg.Encryption); v != nil {
			d = v.Decoy()
		}
	}
	s.decoy.Store(&verifierBox{d})
	return s, nil
}

// sourceKey is the rate limit's key for an address: the IP for IPv4, the
// /64 for IPv6.
func sourceKey(a net.Addr) string {
	if a == nil {
		return ""
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, ok := netip.AddrFromSlice(ta.IP)
		if ok {
			ip = ip.Unmap()
			if ip.Is6() {
				p, _ := ip.Prefix(64)
				return p.String()
			}
			return ip.String()
		}
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// locked reports whether key is locked out, and until when.
func (s *Service) locked(key string) (time.Time, bool) {
	if s.lim.Failures < 0 {
		return time.Time{}, false
	}
	s.limMu.Lock()
	defer s.limMu.Unlock()
	f, ok := s.sources.Get(key)
	if !ok || !s.now().Before(f.lockedUntil) {
		return time.Time{}, false
	}
	return f.lockedUntil, true
}

// fail counts a failure from key; it reports whether that locked it out.
func (s *Service) fail(key string) bool {
	if s.lim.Failures < 0 {
		return false
	}
	now := s.now()
	s.limMu.Lock()
	defer s.limMu.Unlock()
	f, ok := s.sources.Get(key)
	if !ok || now.Sub(f.since) >= s.lim.Window {
		f = &failures{since: now}
	}
	f.n++
	lock := f.n >= s.lim.Failures
	if lock {
		f.lockedUntil = now.Add(s.lim.Lockout)
		f.n, f.since = 0, f.lockedUntil
	}
	s.sources.Add(key, f)
	return lock
}

// Login checks a username and password from remote. It returns
// hawser.ErrLoginFailed for a wrong password and for an unknown user
// alike, after the same work (an unknown user's password is checked
// against a decoy of the same algorithm and cost);
// hawser.ErrLoginLimited while remote is locked out; ErrUnavailable if
// the data source failed; or ctx's error if it ended while the login
// waited for a verification slot.
func (s *Service) Login(ctx context.Context, remote net.Addr, username, password string) (*Session, error) {
	key := sourceKey(remote)
	log := s.log.With("user", username, "remote", addrString(remote))
	if until, ok := s.locked(key); ok {
		s.limited.Add(1)
		log.Warn("hawser: login refused: too many failed logins from this address", "until", until.Format(time.RFC3339))
		return nil, hawser.ErrLoginLimited
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.sem }()

	u, found, err := s.src.User(ctx, username)
	if err != nil && !errors.Is(err, ErrBadPermission) {
		log.Error("hawser: login failed: the data source failed", "err", err)
		return nil, ErrUnavailable
	}
	reason := "wrong password"
	var v Verifier
	switch {
	case err != nil:
		reason, found = "the user's permissions are malformed: "+err.Error(), false
	case !found:
		reason = "unknown user"
	default:
		if v, err = ParseVerifier(s.enc, u.Password); err != nil {
			reason, found = "the stored password is malformed: "+err.Error(), false
		} else {
			s.decoy.Store(&verifierBox{v.Decoy()})
		}
	}
	if v == nil {
		v = s.decoy.Load().v
	}
	if s.onVerify != nil {
		s.onVerify(!found)
	}
	if ok := v.Verify(password); ok && found {
		s.logins.Add(1)
		log.Info("hawser: login")
		return &Session{svc: s, user: u.Name, perms: u.Permissions}, nil
	}
	s.failed.Add(1)
	if s.fail(key) {
		log.Warn("hawser: login failed; the address is locked out", "reason", reason, "for", s.lim.Lockout)
	} else {
		log.Info("hawser: login failed", "reason", reason)
	}
	return nil, hawser.ErrLoginFailed
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Stats counts logins.
type Stats struct {
	Logins  uint64 // succeeded
	Failed  uint64 // wrong username or password
	Limited uint64 // refused during a lockout
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	return Stats{Logins: s.logins.Load(), Failed: s.failed.Load(), Limited: s.limited.Load()}
}

// Session is one logged-in user. Its permissions are read from the data
// source at each check, so that a change there takes effect at once (or
// when a Cached entry expires); an InMemory source's never change, so a
// session keeps those it logged in with.
type Session struct {
	svc   *Service
	user  string
	perms *Permissions // the login's; current for a static source
}

// User is the username.
func (s *Session) User() string { return s.user }

// Permissions returns the user's current permissions. A user removed from
// the data source has none.
func (s *Session) Permissions(ctx context.Context) (*Permissions, error) {
	if s.svc.static {
		return s.perms, nil
	}
	u, found, err := s.svc.src.User(ctx, s.user)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, nil
	}
	return u.Permissions, nil
}

// CheckMethod returns nil if the user may call the method registered
// under name, hawser.ErrPermissionDenied if not, or the data source's
// failure (logged; the call is denied).
func (s *Session) CheckMethod(ctx context.Context, name string) error {
	if s.svc.static {
		if s.perms.AllowsMethod(name) {
			return nil
		}
		return hawser.ErrPermissionDenied
	}
	p, err := s.Permissions(ctx)
	if err != nil {
		s.svc.log.Error("hawser: permission check failed: the data source failed", "user", s.user, "method", name, "err", err)
		return hawser.ErrPermissionDenied
	}
	if p.AllowsMethod(name) {
		return nil
	}
	return hawser.ErrPermissionDenied
}

// CheckFlow is CheckMethod for starting the flow registered under name.
func (s *Session) CheckFlow(ctx context.Context, name string) error {
	p, err := s.Permissions(ctx)
	if err != nil {
		s.svc.log.Error("hawser: permission check failed: the data source failed", "user", s.user, "flow", name, "err", err)
		return hawser.ErrPermissionDenied
	}
	if p.AllowsFlow(name) {
		return nil
	}
	return hawser.ErrPermissionDenied
}

// Static reports whether permissions never change during a session
// (an InMemory source): checks then never block.
func (s *Service) Static() bool { return s.static }
