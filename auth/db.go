package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"time"
)

// Placeholder is how a database/sql driver writes a statement's
// parameters.
type Placeholder uint8

const (
	// PlaceholderAuto detects the style from the package of the driver's
	// type (db.Driver()): see DBOptions.Placeholder.
	PlaceholderAuto Placeholder = iota
	// PlaceholderQuestion is ? (SQLite, MySQL, MariaDB).
	PlaceholderQuestion
	// PlaceholderDollar is $1, $2 (PostgreSQL).
	PlaceholderDollar
)

// dollarDrivers and questionDrivers are the driver packages PlaceholderAuto
// knows. A wrapped or unknown driver is an error of NewDB, never a guess.
var (
	dollarDrivers = []string{
		"github.com/jackc/pgx/v5/stdlib",
		"github.com/jackc/pgx/v4/stdlib",
		"github.com/lib/pq",
		"github.com/uptrace/bun/driver/pgdriver",
	}
	questionDrivers = []string{
		"modernc.org/sqlite",
		"github.com/mattn/go-sqlite3",
		"github.com/ncruces/go-sqlite3/driver",
		"github.com/go-sql-driver/mysql",
	}
)

// DBOptions configures NewDB. The zero value reads the tables users,
// user_roles and roles_permissions through a driver PlaceholderAuto knows,
// within 5 s a lookup.
type DBOptions struct {
	// Placeholder is the driver's parameter style. Default PlaceholderAuto:
	// PlaceholderDollar for the drivers github.com/jackc/pgx/v5/stdlib (and
	// v4), github.com/lib/pq and github.com/uptrace/bun/driver/pgdriver;
	// PlaceholderQuestion for modernc.org/sqlite, github.com/mattn/go-sqlite3,
	// github.com/ncruces/go-sqlite3/driver and github.com/go-sql-driver/mysql.
	// For any other driver, or one behind a wrapper (tracing, metrics),
	// NewDB fails and asks for it.
	Placeholder Placeholder

	// TablePrefix is written, as it is, before each of the three table
	// names: "auth." reads auth.users and so on (a PostgreSQL schema, an
	// attached SQLite database), "corda_" reads corda_users. Unquoted, so
	// PostgreSQL folds it to lower case. Letters, digits, '_' and '.',
	// neither starting with a digit or '.' nor with ".." inside; at most
	// 128 bytes. Default "".
	TablePrefix string

	// QueryTimeout bounds each lookup, within the caller's ctx. Default 5 s;
	// negative: no bound but ctx.
	QueryTimeout time.Duration

	// MaxPermissions bounds the permission rows of one user (over all of
	// its roles, duplicates counted): a lookup that meets more fails with
	// ErrSource. Default (values below 1) 10,000.
	MaxPermissions int
}

const (
	// DefaultQueryTimeout is DBOptions.QueryTimeout's default.
	DefaultQueryTimeout = 5 * time.Second
	// DefaultMaxPermissions is DBOptions.MaxPermissions' default.
	DefaultMaxPermissions = 10000
	// MaxStoredPassword bounds users.password: a hash string is some
	// hundred bytes, so a longer one is a malformed row (ErrSource).
	MaxStoredPassword = 4096
	maxTablePrefix    = 128
)

// DB is the DB data source: users and their permissions read with
// database/sql from three tables, after Corda's
//
//	users(username, password)
//	user_roles(username, role_name)
//	roles_permissions(role_name, permission)
//
// where other columns may exist. A user's permissions are those of its
// roles (none without a role; duplicates are harmless). Each lookup runs
// one statement, so a change in the tables takes effect at the next lookup
// (put a Cached in front to query less: a change then takes effect when
// the entry expires).
//
// A lookup fails with an error wrapping ErrSource, and naming the user,
// when the database does (unreachable, a missing table, QueryTimeout) and
// when a row is malformed: more than one users row for the name, a NULL
// or over-long (MaxStoredPassword) password, more than MaxPermissions
// permission rows, or a permission that ParsePermission rejects (then the
// error wraps ErrBadPermission too, and names the role and the string).
// The driver has read a row before it is checked: the bounds limit what a
// lookup keeps, not what it transfers.
//
// The library links no driver: a daemon (or a test) imports one, or
// github.com/hawser-rpc/hawser/drivers for SQLite and PostgreSQL.
type DB struct {
	// Immutable after NewDB.
	db       *sql.DB
	lookup   string // takes the name twice
	timeout  time.Duration
	maxPerms int

	queries atomic.Uint64
}

// NewDB returns the data source reading db. It checks opts, not the
// database: Ping does.
func NewDB(db *sql.DB, opts DBOptions) (*DB, error) {
	if db == nil {
		return nil, errors.New("auth: NewDB: nil *sql.DB")
	}
	ph := opts.Placeholder
	if ph == PlaceholderAuto {
		var err error
		if ph, err = detectPlaceholder(db); err != nil {
			return nil, err
		}
	}
	if ph != PlaceholderQuestion && ph != PlaceholderDollar {
		return nil, fmt.Errorf("auth: NewDB: unknown DBOptions.Placeholder %d", ph)
	}
	if err := checkTablePrefix(opts.TablePrefix); err != nil {
		return nil, err
	}
	d := &DB{db: db, timeout: opts.QueryTimeout, maxPerms: opts.MaxPermissions}
	if d.timeout == 0 {
		d.timeout = DefaultQueryTimeout
	}
	if d.maxPerms < 1 {
		d.maxPerms = DefaultMaxPermissions
	}
	p1, p2 := "?", "?"
	if ph == PlaceholderDollar {
		p1, p2 = "$1", "$2"
	}
	// One statement, so that the user and its permissions come from one
	// snapshot and a lookup is one round trip. The first column tells the
	// branches apart; each branch selects real columns (username for the
	// role's place), so no literal decides a UNION's column type. The
	// password is read once, not once per permission as a LEFT JOIN would.
	p := opts.TablePrefix
	d.lookup = "SELECT 0, u.username, u.password FROM " + p + "users u WHERE u.username = " + p1 +
		" UNION ALL SELECT 1, ur.role_name, rp.permission FROM " + p + "user_roles ur JOIN " +
		p + "roles_permissions rp ON rp.role_name = ur.role_name WHERE ur.username = " + p2
	return d, nil
}

func detectPlaceholder(db *sql.DB) (Placeholder, error) {
	t := reflect.TypeOf(db.Driver())
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	pkg := ""
	if t != nil {
		pkg = t.PkgPath()
	}
	for _, p := range dollarDrivers {
		if pkg == p {
			return PlaceholderDollar, nil
		}
	}
	for _, p := range questionDrivers {
		if pkg == p {
			return PlaceholderQuestion, nil
		}
	}
	return 0, fmt.Errorf("auth: NewDB: cannot tell the placeholder style of driver %T (package %q): set DBOptions.Placeholder", db.Driver(), pkg)
}

func checkTablePrefix(p string) error {
	bad := len(p) > maxTablePrefix || strings.Contains(p, "..") ||
		(p != "" && (p[0] == '.' || p[0] >= '0' && p[0] <= '9'))
	for i := 0; i < len(p) && !bad; i++ {
		bad = !prefixByte(p[i])
	}
	if bad {
		return fmt.Errorf("auth: NewDB: DBOptions.TablePrefix %q: want letters, digits, '_' and '.' (not first, not doubled), at most %d bytes", p, maxTablePrefix)
	}
	return nil
}

func prefixByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.'
}

// Queries returns how many statements the source has run (lookups and
// pings, failed ones too).
func (d *DB) Queries() uint64 { return d.queries.Load() }

// query runs the lookup statement for name within QueryTimeout; the caller
// closes the rows, then calls the cancel function.
func (d *DB) query(ctx context.Context, name string) (*sql.Rows, context.CancelFunc, error) {
	cancel := context.CancelFunc(func() {})
	if d.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, d.timeout)
	}
	d.queries.Add(1)
	rows, err := d.db.QueryContext(ctx, d.lookup, name, name)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return rows, cancel, nil
}

// User implements Source with one statement.
func (d *DB) User(ctx context.Context, name string) (User, bool, error) {
	rows, cancel, err := d.query(ctx, name)
	if err != nil {
		return User{}, false, fmt.Errorf("%w: user %q: %w", ErrSource, name, err)
	}
	defer cancel()
	u, found, err := d.read(rows, name)
	if cerr := rows.Close(); err == nil && cerr != nil {
		return User{}, false, fmt.Errorf("%w: user %q: %w", ErrSource, name, cerr)
	}
	return u, found, err
}

// read reads the lookup statement's rows for name.
func (d *DB) read(rows *sql.Rows, name string) (User, bool, error) {
	var (
		users   int
		pass    string
		perms   = &Permissions{}
		n       int   // permission rows
		permErr error // the first malformed one, reported only if the user exists
	)
	for rows.Next() {
		var (
			kind int64
			a, b sql.NullString // username and password, or role_name and permission
		)
		if err := rows.Scan(&kind, &a, &b); err != nil {
			return User{}, false, fmt.Errorf("%w: user %q: %w", ErrSource, name, err)
		}
		switch kind {
		case 0:
			users++
			switch {
			case users > 1:
				return User{}, false, fmt.Errorf("%w: user %q: more than one row in users", ErrSource, name)
			case !b.Valid:
				return User{}, false, fmt.Errorf("%w: user %q: NULL password", ErrSource, name)
			case len(b.String) > MaxStoredPassword:
				return User{}, false, fmt.Errorf("%w: user %q: stored password of %d bytes (at most %d)", ErrSource, name, len(b.String), MaxStoredPassword)
			}
			pass = b.String
		default:
			n++
			if n > d.maxPerms {
				return User{}, false, fmt.Errorf("%w: user %q: more than %d permission rows", ErrSource, name, d.maxPerms)
			}
			if permErr != nil {
				continue
			}
			if !b.Valid {
				permErr = fmt.Errorf("%w: user %q, role %q: %w: NULL", ErrSource, name, a.String, ErrBadPermission)
				continue
			}
			perm, err := ParsePermission(b.String)
			if err != nil {
				permErr = fmt.Errorf("%w: user %q, role %q: %w", ErrSource, name, a.String, err)
				continue
			}
			perms.add(perm)
		}
	}
	if err := rows.Err(); err != nil {
		return User{}, false, fmt.Errorf("%w: user %q: %w", ErrSource, name, err)
	}
	if users == 0 {
		// Rows of user_roles for a name users lacks make no user.
		return User{}, false, nil
	}
	if permErr != nil {
		return User{}, false, permErr
	}
	return User{Name: name, Password: pass, Permissions: perms}, true, nil
}

// Ping checks, within QueryTimeout, that the database answers the lookup
// statement: that it is reachable and has the three tables, with their
// columns, under TablePrefix. A daemon calls it at startup, so that a wrong
// DSN or prefix is reported then and not at the first login. It looks up
// the user "" and ignores what it finds.
func (d *DB) Ping(ctx context.Context) error {
	rows, cancel, err := d.query(ctx, "")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSource, err)
	}
	defer cancel()
	for n := 0; n <= d.maxPerms && rows.Next(); n++ {
	}
	err = rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSource, err)
	}
	return nil
}
