package drivers_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser/auth"
	_ "github.com/hawser-rpc/hawser/drivers"
)

// backend is one database the suite runs auth.DB against.
type backend struct {
	// open returns a fresh, empty place for one test's tables, named by
	// the TablePrefix it returns, and a *sql.DB the test may close.
	open func(t *testing.T) (db *sql.DB, prefix string)
	// unreachable returns a *sql.DB whose database cannot be reached.
	unreachable func(t *testing.T) *sql.DB
	dollar      bool // the driver takes $1, not ?
}

var sqlite = backend{
	open: func(t *testing.T) (*sql.DB, string) {
		// A file per test, so tests run in parallel and again.
		path := filepath.Join(t.TempDir(), "auth.db")
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db, "hawser_"
	},
	unreachable: func(t *testing.T) *sql.DB {
		db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "no", "such", "dir", "auth.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	},
}

func TestDBSQLite(t *testing.T) { runSuite(t, sqlite) }

// pgDSN returns HAWSER_TEST_PG_DSN. Without it the test is skipped, but
// fails in CI, where PostgreSQL must not go untested unnoticed.
func pgDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("HAWSER_TEST_PG_DSN")
	if dsn != "" {
		return dsn
	}
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal(`HAWSER_TEST_PG_DSN is unset: PostgreSQL is required in CI; run scripts/test-drivers.sh, or eval "$(scripts/postgres.sh start)" first`)
	}
	t.Skip(`HAWSER_TEST_PG_DSN is unset: run scripts/test-drivers.sh, or eval "$(scripts/postgres.sh start)" first, to test against PostgreSQL`)
	return ""
}

func TestDBPostgreSQL(t *testing.T) { runSuite(t, postgres(t)) }

// postgres is the backend of the server HAWSER_TEST_PG_DSN names.
func postgres(t *testing.T) backend {
	dsn := pgDSN(t)
	return backend{
		dollar: true,
		open: func(t *testing.T) (*sql.DB, string) {
			// A schema per test, dropped by another handle than the one the
			// test may close.
			var b [8]byte
			rand.Read(b[:])
			schema := "hawser_t_" + hex.EncodeToString(b[:])
			admin, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
				admin.Close()
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
					t.Errorf("dropping schema %s: %v", schema, err)
				}
				admin.Close()
			})
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db, schema + "."
		},
		unreachable: func(t *testing.T) *sql.DB {
			// Port 1 refuses; nothing is sent to the test server.
			db, err := sql.Open("pgx", "postgres://hawser:x@127.0.0.1:1/hawser_test?sslmode=disable&connect_timeout=5")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
	}
}

// env is one test's tables and the source over them.
type env struct {
	t      *testing.T
	db     *sql.DB
	prefix string
	dollar bool
	src    *auth.DB
}

// newEnv creates the three tables, each with a column auth.DB does not
// read (first, so that nothing depends on column order), and fills them:
// alice has the roles reader and writer (InvokeRpc.kv.Get in both), bob
// has none, and the role idle has no permission.
func newEnv(t *testing.T, b backend, opts auth.DBOptions) *env {
	t.Helper()
	db, prefix := b.open(t)
	e := &env{t: t, db: db, prefix: prefix, dollar: b.dollar}
	e.exec(`CREATE TABLE {p}users (id INTEGER, username VARCHAR(64) NOT NULL PRIMARY KEY, password TEXT, email VARCHAR(128))`)
	e.exec(`CREATE TABLE {p}user_roles (granted_by VARCHAR(64), username VARCHAR(64) NOT NULL, role_name VARCHAR(64) NOT NULL)`)
	e.exec(`CREATE TABLE {p}roles_permissions (note VARCHAR(128), role_name VARCHAR(64) NOT NULL, permission VARCHAR(1024))`)
	e.exec(`INSERT INTO {p}users (id, username, password, email) VALUES (1, 'alice', 'pw-alice', 'a@example.com'), (2, 'bob', 'pw-bob', NULL)`)
	e.exec(`INSERT INTO {p}user_roles (granted_by, username, role_name) VALUES ('root', 'alice', 'reader'), ('root', 'alice', 'writer'), (NULL, 'carol', 'reader')`)
	e.exec(`INSERT INTO {p}roles_permissions (note, role_name, permission) VALUES
		('', 'reader', 'InvokeRpc.kv.Get'),
		('', 'writer', 'InvokeRpc.kv.Put'),
		('twice', 'writer', 'InvokeRpc.kv.Get'),
		('', 'writer', 'StartFlow.Pay'),
		('', 'idle', 'ALL')`)
	opts.TablePrefix = prefix
	src, err := auth.NewDB(db, opts) // Placeholder detected from the driver
	if err != nil {
		t.Fatal(err)
	}
	e.src = src
	return e
}

// exec runs a statement written with ? placeholders and {p} before table
// names.
func (e *env) exec(query string, args ...any) {
	e.t.Helper()
	query = strings.ReplaceAll(query, "{p}", e.prefix)
	if e.dollar {
		var b strings.Builder
		n := 0
		for _, r := range query {
			if r == '?' {
				n++
				b.WriteString("$" + strconv.Itoa(n))
				continue
			}
			b.WriteRune(r)
		}
		query = b.String()
	}
	if _, err := e.db.Exec(query, args...); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
}

// user looks name up in src and fails the test unless it is found.
func (e *env) user(src auth.Source, name string) auth.User {
	e.t.Helper()
	u, found, err := src.User(context.Background(), name)
	if err != nil || !found {
		e.t.Fatalf("User(%q) = %v, %v; want found", name, found, err)
	}
	return u
}

func runSuite(t *testing.T, b backend) {
	ctx := context.Background()

	t.Run("found, permissions from two roles", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, b, auth.DBOptions{})
		if err := e.src.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		q0 := e.src.Queries()
		u := e.user(e.src, "alice")
		if u.Name != "alice" || u.Password != "pw-alice" {
			t.Errorf("user %q, password %q", u.Name, u.Password)
		}
		p := u.Permissions
		if !p.AllowsMethod("kv.Get") || !p.AllowsMethod("kv.Put") || !p.AllowsFlow("Pay") {
			t.Errorf("permissions %v lack one of the two roles'", p.List())
		}
		if p.AllowsMethod("kv.Delete") || p.AllowsFlow("Refund") {
			t.Errorf("permissions %v allow too much", p.List())
		}
		if n := len(p.List()); n != 4 {
			t.Errorf("%d permissions, want 4 (InvokeRpc.kv.Get twice)", n)
		}
		if q := e.src.Queries() - q0; q != 1 {
			t.Errorf("a lookup ran %d statements, want 1", q)
		}
	})

	t.Run("unknown user", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, b, auth.DBOptions{})
		// carol has a user_roles row but no users row.
		for _, name := range []string{"nobody", "carol", "", "alice'--", "ALICE"} {
			if u, found, err := e.src.User(ctx, name); found || err != nil {
				t.Errorf("User(%q) = %v, %v, %v; want not found", name, u, found, err)
			}
		}
	})

	t.Run("user without roles", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, b, auth.DBOptions{})
		u := e.user(e.src, "bob")
		if len(u.Permissions.List()) != 0 || u.Permissions.AllowsMethod("kv.Get") {
			t.Errorf("bob, without roles, has %v", u.Permissions.List())
		}
		e.exec(`INSERT INTO {p}user_roles (username, role_name) VALUES ('bob', 'nosuchrole')`)
		if u := e.user(e.src, "bob"); len(u.Permissions.List()) != 0 {
			t.Errorf("bob, with a role no permission names, has %v", u.Permissions.List())
		}
	})

	t.Run("changes take effect at the next lookup", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, b, auth.DBOptions{})
		e.exec(`INSERT INTO {p}roles_permissions (role_name, permission) VALUES (?, ?)`, "writer", "InvokeRpc.kv.Delete")
		if u := e.user(e.src, "alice"); !u.Permissions.AllowsMethod("kv.Delete") {
			t.Errorf("an added permission did not take effect: %v", u.Permissions.List())
		}
		e.exec(`DELETE FROM {p}roles_permissions WHERE role_name = ? AND permission = ?`, "writer", "InvokeRpc.kv.Delete")
		if u := e.user(e.src, "alice"); u.Permissions.AllowsMethod("kv.Delete") {
			t.Errorf("a removed permission still in effect: %v", u.Permissions.List())
		}
		e.exec(`INSERT INTO {p}user_roles (username, role_name) VALUES (?, ?)`, "bob", "idle")
		if u := e.user(e.src, "bob"); !u.Permissions.AllowsMethod("anything") {
			t.Errorf("a granted role did not take effect: %v", u.Permissions.List())
		}
		e.exec(`UPDATE {p}users SET password = ? WHERE username = ?`, "new-pw", "alice")
		if u := e.user(e.src, "alice"); u.Password != "new-pw" {
			t.Errorf("password %q after a change", u.Password)
		}
		e.exec(`DELETE FROM {p}users WHERE username = ?`, "alice")
		if _, found, err := e.src.User(ctx, "alice"); found || err != nil {
			t.Errorf("a removed user: %v, %v", found, err)
		}
	})

	t.Run("through Cached, changes take effect on expiry", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, b, auth.DBOptions{})
		// Cached has no clock to fake, and synctest cannot hold a real
		// database (nor the LRU's ticker goroutine, which never ends): the
		// test waits out a real expiry. If the machine is too slow to make
		// the second lookup within it, a longer one is tried.
		for _, expiry := range []time.Duration{500 * time.Millisecond, 2 * time.Second, 8 * time.Second} {
			if cachedExpiry(t, e, expiry) {
				return
			}
			t.Logf("the lookups took longer than the %v expiry; trying a longer one", expiry)
		}
		t.Fatal("lookups too slow for every expiry tried")
	})

	t.Run("malformed permission row", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, b, auth.DBOptions{})
		c := auth.NewCached(e.src, auth.CacheConfig{ExpireAfter: time.Hour})
		e.exec(`INSERT INTO {p}roles_permissions (role_name, permission) VALUES (?, ?)`, "writer", "InvokeRpc.kv..Put")
		for _, src := range []auth.Source{e.src, c} {
			u, found, err := src.User(ctx, "alice")
			if !errors.Is(err, auth.ErrSource) || !errors.Is(err, auth.ErrBadPermission) || found || u.Permissions != nil {
				t.Errorf("%T.User = %v, %v, %v; want ErrSource and ErrBadPermission", src, u, found, err)
			}
		}
		e.user(e.src, "bob") // other users are unaffected
		e.exec(`UPDATE {p}roles_permissions SET permission = NULL WHERE permission = ?`, "InvokeRpc.kv..Put")
		if _, _, err := e.src.User(ctx, "alice"); !errors.Is(err, auth.ErrBadPermission) {
			t.Errorf("a NULL permission: %v; want ErrBadPermission", err)
		}
		// Errors are not cached: the fixed row takes effect at once.
		e.exec(`DELETE FROM {p}roles_permissions WHERE permission IS NULL`)
		if u := e.user(c, "alice"); !u.Permissions.AllowsMethod("kv.Put") {
			t.Errorf("after the fix: %v", u.Permissions.List())
		}
	})

	t.Run("bounds", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, b, auth.DBOptions{})
		few, err := auth.NewDB(e.db, auth.DBOptions{TablePrefix: e.prefix, MaxPermissions: 3})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := few.User(ctx, "alice"); !errors.Is(err, auth.ErrSource) {
			t.Errorf("4 permission rows, MaxPermissions 3: %v; want ErrSource", err)
		}
		e.exec(`UPDATE {p}users SET password = ? WHERE username = ?`, strings.Repeat("x", auth.MaxStoredPassword+1), "bob")
		if _, _, err := e.src.User(ctx, "bob"); !errors.Is(err, auth.ErrSource) {
			t.Errorf("a password over MaxStoredPassword: %v; want ErrSource", err)
		}
		e.exec(`UPDATE {p}users SET password = NULL WHERE username = ?`, "bob")
		if _, _, err := e.src.User(ctx, "bob"); !errors.Is(err, auth.ErrSource) {
			t.Errorf("a NULL password: %v; want ErrSource", err)
		}
	})

	t.Run("database closed", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, b, auth.DBOptions{})
		e.user(e.src, "alice")
		e.db.Close()
		if _, found, err := e.src.User(ctx, "alice"); !errors.Is(err, auth.ErrSource) || found {
			t.Errorf("User on a closed database = %v, %v; want ErrSource", found, err)
		}
		if err := e.src.Ping(ctx); !errors.Is(err, auth.ErrSource) {
			t.Errorf("Ping on a closed database = %v; want ErrSource", err)
		}
	})

	t.Run("database unreachable", func(t *testing.T) {
		t.Parallel()
		src, err := auth.NewDB(b.unreachable(t), auth.DBOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := auth.NewCached(src, auth.CacheConfig{ExpireAfter: time.Hour})
		for _, s := range []auth.Source{src, c, c} { // failures are not cached
			if _, found, err := s.User(ctx, "alice"); !errors.Is(err, auth.ErrSource) || found {
				t.Errorf("%T.User = %v, %v; want ErrSource", s, found, err)
			}
		}
		if err := src.Ping(ctx); !errors.Is(err, auth.ErrSource) {
			t.Errorf("Ping = %v; want ErrSource", err)
		}
		if q := src.Queries(); q != 4 {
			t.Errorf("Queries() = %d, want 4 (failed statements count)", q)
		}
	})

	t.Run("Ping finds missing tables", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, b, auth.DBOptions{})
		wrong, err := auth.NewDB(e.db, auth.DBOptions{TablePrefix: e.prefix + "x_"})
		if err != nil {
			t.Fatal(err)
		}
		if err := wrong.Ping(ctx); !errors.Is(err, auth.ErrSource) {
			t.Errorf("Ping with a wrong prefix = %v; want ErrSource", err)
		}
	})

	t.Run("concurrent lookups", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, b, auth.DBOptions{})
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				for j := range 20 {
					if j%5 == i {
						e.exec(`INSERT INTO {p}roles_permissions (role_name, permission) VALUES (?, ?)`, "idle", "StartFlow.F"+strconv.Itoa(i*100+j))
					}
					for _, name := range []string{"alice", "bob"} {
						if _, found, err := e.src.User(ctx, name); !found || err != nil {
							t.Errorf("User(%s) = %v, %v", name, found, err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
	})
}

// cachedExpiry checks auth.Cached over e.src with the given expiry: a
// change is invisible, and costs no statement, until the entry expires.
// It reports false if the second lookup came too late to tell.
func cachedExpiry(t *testing.T, e *env, expiry time.Duration) bool {
	t.Helper()
	c := auth.NewCached(e.src, auth.CacheConfig{ExpireAfter: expiry})
	before := time.Now()
	if u := e.user(c, "alice"); u.Permissions.AllowsFlow("Refund") {
		t.Fatalf("alice starts with %v", u.Permissions.List())
	}
	added := time.Now() // the entry was added in [before, added]
	q0 := e.src.Queries()
	e.exec(`INSERT INTO {p}roles_permissions (role_name, permission) VALUES (?, ?)`, "reader", "StartFlow.Refund")
	defer e.exec(`DELETE FROM {p}roles_permissions WHERE permission = ?`, "StartFlow.Refund")

	u := e.user(c, "alice")
	if time.Since(before) >= expiry {
		return false
	}
	if u.Permissions.AllowsFlow("Refund") {
		t.Errorf("a change took effect before the entry expired")
	}
	if q := e.src.Queries() - q0; q != 0 {
		t.Errorf("a lookup within the expiry ran %d statements, want 0", q)
	}

	time.Sleep(time.Until(added.Add(expiry)) + 10*time.Millisecond)
	if u := e.user(c, "alice"); !u.Permissions.AllowsFlow("Refund") {
		t.Errorf("the change did not take effect after the entry expired: %v", u.Permissions.List())
	}
	if q := e.src.Queries() - q0; q != 1 {
		t.Errorf("the lookup after expiry ran %d statements, want 1", q)
	}
	e.user(c, "alice")
	if q := e.src.Queries() - q0; q != 1 {
		t.Errorf("a lookup within the new entry's expiry ran a statement (%d in all)", q)
	}
	return true
}
