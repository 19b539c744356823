package auth

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDB is a database/sql driver that answers DB's lookup statement from
// three slices, as the UNION ALL would (permission rows first, to prove the
// order does not matter). The real drivers are tested in the drivers module.
type fakeDB struct {
	mu       sync.Mutex
	users    []fakeRow // username, password (nil: NULL)
	roles    [][2]string
	perms    []fakeRow // role_name, permission (nil: NULL)
	queryErr error     // returned by QueryContext
	rowsErr  error     // returned by Rows.Next after the rows
	block    bool      // QueryContext waits for its ctx
	queries  []string
	args     [][]driver.NamedValue
}

type fakeRow struct {
	key   string
	value any // string or nil
}

func str(s string) any { return s }

func (f *fakeDB) Connect(context.Context) (driver.Conn, error) { return fakeConn{f}, nil }
func (f *fakeDB) Driver() driver.Driver                        { return fakeDriver{} }

type fakeDriver struct{}

func (fakeDriver) Open(string) (driver.Conn, error) {
	return nil, errors.New("fake: open with the connector")
}

type fakeConn struct{ f *fakeDB }

func (fakeConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("fake: no Prepare") }
func (fakeConn) Close() error                        { return nil }
func (fakeConn) Begin() (driver.Tx, error)           { return nil, errors.New("fake: no transactions") }

func (c fakeConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	f := c.f
	f.mu.Lock()
	f.queries = append(f.queries, query)
	f.args = append(f.args, args)
	block, qerr := f.block, f.queryErr
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if qerr != nil {
		return nil, qerr
	}
	if len(args) != 2 {
		return nil, errors.New("fake: want the name twice")
	}
	user, _ := args[0].Value.(string)
	roleUser, _ := args[1].Value.(string)
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &fakeRows{err: f.rowsErr}
	for _, ur := range f.roles {
		if ur[0] != roleUser {
			continue
		}
		for _, p := range f.perms {
			if p.key == ur[1] {
				r.vals = append(r.vals, []driver.Value{int64(1), ur[1], p.value})
			}
		}
	}
	for _, u := range f.users {
		if u.key == user {
			r.vals = append(r.vals, []driver.Value{int64(0), u.key, u.value})
		}
	}
	return r, nil
}

type fakeRows struct {
	vals [][]driver.Value
	err  error
}

func (r *fakeRows) Columns() []string { return []string{"kind", "a", "b"} }
func (r *fakeRows) Close() error      { return nil }
func (r *fakeRows) Next(dest []driver.Value) error {
	if len(r.vals) == 0 {
		if r.err != nil {
			return r.err
		}
		return io.EOF
	}
	copy(dest, r.vals[0])
	r.vals = r.vals[1:]
	return nil
}

// newFake returns a fake database with alice (roles reader and writer, a
// permission in both) and bob (no role), and the source over it.
func newFake(t *testing.T, opts DBOptions) (*fakeDB, *DB) {
	t.Helper()
	f := &fakeDB{
		users: []fakeRow{{"alice", str("pw-alice")}, {"bob", str("pw-bob")}},
		roles: [][2]string{{"alice", "reader"}, {"alice", "writer"}, {"carol", "reader"}},
		perms: []fakeRow{
			{"reader", str("InvokeRpc.kv.Get")},
			{"writer", str("InvokeRpc.kv.Put")},
			{"writer", str("InvokeRpc.kv.Get")},
			{"writer", str("StartFlow.Pay")},
		},
	}
	db := sql.OpenDB(f)
	t.Cleanup(func() { db.Close() })
	if opts.Placeholder == PlaceholderAuto {
		opts.Placeholder = PlaceholderDollar
	}
	d, err := NewDB(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	return f, d
}

func TestDBUserFound(t *testing.T) {
	f, d := newFake(t, DBOptions{})
	u, found, err := d.User(context.Background(), "alice")
	if err != nil || !found {
		t.Fatalf("User(alice) = %v, %v", found, err)
	}
	if u.Name != "alice" || u.Password != "pw-alice" {
		t.Errorf("user = %q, %q", u.Name, u.Password)
	}
	p := u.Permissions
	if !p.AllowsMethod("kv.Get") || !p.AllowsMethod("kv.Put") || !p.AllowsFlow("Pay") {
		t.Errorf("permissions %v lack one of both roles'", p.List())
	}
	if p.AllowsMethod("kv.Delete") || p.AllowsFlow("Refund") {
		t.Errorf("permissions %v allow too much", p.List())
	}
	if n := len(p.List()); n != 4 {
		t.Errorf("%d permissions, want 4 (a duplicate is kept, harmless)", n)
	}
	if d.Queries() != 1 || len(f.queries) != 1 {
		t.Fatalf("Queries() = %d, driver saw %d, want 1 statement a lookup", d.Queries(), len(f.queries))
	}
	q := f.queries[0]
	if !strings.Contains(q, "= $1") || !strings.Contains(q, "= $2") || strings.Contains(q, "?") {
		t.Errorf("PlaceholderDollar statement %q", q)
	}
	for i, a := range f.args[0] {
		if a.Value != "alice" {
			t.Errorf("argument %d = %v", i, a.Value)
		}
	}
}

func TestDBUserUnknownAndWithoutRoles(t *testing.T) {
	f, d := newFake(t, DBOptions{})
	f.perms = append(f.perms, fakeRow{"reader", str("no such action")})
	f.roles = append(f.roles, [2]string{"bob", "empty-role"})
	ctx := context.Background()

	// carol has user_roles rows, malformed ones even, but no users row.
	for _, name := range []string{"nobody", "carol", ""} {
		if _, found, err := d.User(ctx, name); found || err != nil {
			t.Errorf("User(%q) = %v, %v; want not found", name, found, err)
		}
	}
	u, found, err := d.User(ctx, "bob")
	if err != nil || !found {
		t.Fatalf("User(bob) = %v, %v", found, err)
	}
	if u.Permissions == nil || len(u.Permissions.List()) != 0 || u.Permissions.AllowsMethod("kv.Get") {
		t.Errorf("a user without roles (or with an empty role) has permissions %v", u.Permissions.List())
	}
}

func TestDBMalformedRows(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(f *fakeDB)
		opts    DBOptions
		badPerm bool
		mention []string // what the message names (the contract of a log line)
	}{
		{"bad permission", func(f *fakeDB) {
			f.perms = append(f.perms, fakeRow{"writer", str("InvokeRpc.kv..Get")})
		}, DBOptions{}, true, []string{`"alice"`, `"writer"`, `kv..Get`}},
		{"empty permission", func(f *fakeDB) {
			f.perms = append(f.perms, fakeRow{"reader", str("")})
		}, DBOptions{}, true, []string{`"alice"`, `"reader"`}},
		{"NULL permission", func(f *fakeDB) {
			f.perms = append(f.perms, fakeRow{"reader", nil})
		}, DBOptions{}, true, []string{`"alice"`, `"reader"`, "NULL"}},
		{"NULL password", func(f *fakeDB) {
			f.users[0].value = nil
		}, DBOptions{}, false, []string{`"alice"`, "NULL password"}},
		{"long password", func(f *fakeDB) {
			f.users[0].value = strings.Repeat("x", MaxStoredPassword+1)
		}, DBOptions{}, false, []string{`"alice"`, "4097"}},
		{"two users rows", func(f *fakeDB) {
			f.users = append(f.users, fakeRow{"alice", str("other")})
		}, DBOptions{}, false, []string{`"alice"`, "more than one"}},
		{"too many permissions", func(*fakeDB) {}, DBOptions{MaxPermissions: 3}, false, []string{`"alice"`, "more than 3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, d := newFake(t, tc.opts)
			tc.edit(f)
			u, found, err := d.User(context.Background(), "alice")
			if !errors.Is(err, ErrSource) {
				t.Fatalf("User = %v, %v, %v; want ErrSource", u, found, err)
			}
			if found || u.Permissions != nil {
				t.Errorf("an error came with a user: %v %v", found, u)
			}
			if errors.Is(err, ErrBadPermission) != tc.badPerm {
				t.Errorf("errors.Is(%v, ErrBadPermission) = %v", err, !tc.badPerm)
			}
			for _, m := range tc.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("%q does not name %s", err, m)
				}
			}
			// The other users are unaffected.
			if _, found, err := d.User(context.Background(), "bob"); !found || err != nil {
				t.Errorf("User(bob) = %v, %v", found, err)
			}
		})
	}
}

func TestDBFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("query", func(t *testing.T) {
		f, d := newFake(t, DBOptions{})
		down := errors.New("fake: connection refused")
		f.queryErr = down
		if _, _, err := d.User(ctx, "alice"); !errors.Is(err, ErrSource) || !errors.Is(err, down) {
			t.Errorf("User = %v; want ErrSource and the driver's error", err)
		}
		if err := d.Ping(ctx); !errors.Is(err, ErrSource) || !errors.Is(err, down) {
			t.Errorf("Ping = %v", err)
		}
	})
	t.Run("rows", func(t *testing.T) {
		f, d := newFake(t, DBOptions{})
		broken := errors.New("fake: connection reset")
		f.rowsErr = broken
		if _, found, err := d.User(ctx, "alice"); !errors.Is(err, ErrSource) || !errors.Is(err, broken) || found {
			t.Errorf("User = %v, %v; want ErrSource and the driver's error", found, err)
		}
		if err := d.Ping(ctx); !errors.Is(err, broken) {
			t.Errorf("Ping = %v", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		f := &fakeDB{}
		db := sql.OpenDB(f)
		d, err := NewDB(db, DBOptions{Placeholder: PlaceholderQuestion})
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		if _, _, err := d.User(ctx, "alice"); !errors.Is(err, ErrSource) {
			t.Errorf("User on a closed *sql.DB = %v; want ErrSource", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		f, d := newFake(t, DBOptions{QueryTimeout: 20 * time.Millisecond})
		f.block = true
		if _, _, err := d.User(ctx, "alice"); !errors.Is(err, ErrSource) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("User = %v; want ErrSource and DeadlineExceeded", err)
		}
	})
	t.Run("caller's ctx", func(t *testing.T) {
		f, d := newFake(t, DBOptions{QueryTimeout: -1})
		f.block = true
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, _, err := d.User(cctx, "alice"); !errors.Is(err, ErrSource) || !errors.Is(err, context.Canceled) {
			t.Errorf("User = %v; want ErrSource and Canceled", err)
		}
	})
}

func TestNewDBOptions(t *testing.T) {
	db := sql.OpenDB(&fakeDB{})
	defer db.Close()
	if _, err := NewDB(db, DBOptions{}); err == nil || !strings.Contains(err.Error(), "DBOptions.Placeholder") {
		t.Errorf("PlaceholderAuto with an unknown driver = %v; want an error asking for the option", err)
	}
	if _, err := NewDB(db, DBOptions{Placeholder: 9}); err == nil {
		t.Error("Placeholder 9 accepted")
	}
	if _, err := NewDB(nil, DBOptions{Placeholder: PlaceholderQuestion}); err == nil {
		t.Error("nil *sql.DB accepted")
	}
	for _, p := range []string{".auth", "1x_", "a..b", "a;DROP TABLE users;--", "a b", "a\"b.", "\u00e9", strings.Repeat("a", 129)} {
		if _, err := NewDB(db, DBOptions{Placeholder: PlaceholderQuestion, TablePrefix: p}); err == nil {
			t.Errorf("TablePrefix %q accepted", p)
		}
	}
	for _, p := range []string{"", "auth.", "corda_", "Cat.auth.", "_x", strings.Repeat("a", 128)} {
		if _, err := NewDB(db, DBOptions{Placeholder: PlaceholderQuestion, TablePrefix: p}); err != nil {
			t.Errorf("TablePrefix %q: %v", p, err)
		}
	}

	f, d := newFake(t, DBOptions{Placeholder: PlaceholderQuestion, TablePrefix: "auth."})
	if err := d.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	q := f.queries[0]
	if strings.Count(q, "?") != 2 || strings.Contains(q, "$") {
		t.Errorf("PlaceholderQuestion statement %q", q)
	}
	for _, table := range []string{"auth.users ", "auth.user_roles ", "auth.roles_permissions "} {
		if !strings.Contains(q, table) {
			t.Errorf("statement %q lacks %q", q, table)
		}
	}
}

func TestDBCached(t *testing.T) {
	f, d := newFake(t, DBOptions{})
	c := NewCached(d, CacheConfig{ExpireAfter: time.Hour})
	for range 3 {
		if _, found, err := c.User(context.Background(), "alice"); !found || err != nil {
			t.Fatalf("User = %v, %v", found, err)
		}
	}
	if d.Queries() != 1 || len(f.queries) != 1 {
		t.Errorf("3 cached lookups ran %d statements (driver: %d), want 1", d.Queries(), len(f.queries))
	}
}

func TestDBConcurrent(t *testing.T) {
	_, d := newFake(t, DBOptions{})
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if _, found, err := d.User(context.Background(), "alice"); !found || err != nil {
					t.Errorf("User = %v, %v", found, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := d.Queries(); got != workers*each {
		t.Errorf("Queries() = %d, want %d", got, workers*each)
	}
}
