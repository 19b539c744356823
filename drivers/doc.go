// Package drivers links the database/sql drivers hawser's DB data source
// (auth.NewDB) is tested with: modernc.org/sqlite, registered as "sqlite"
// (pure Go, no cgo), and github.com/jackc/pgx/v5/stdlib, registered as
// "pgx" (PostgreSQL). A daemon, or a test, that reads users from SQLite or
// PostgreSQL links them by importing this package for its side effect:
//
//	import _ "github.com/hawser-rpc/hawser/drivers"
//
//	db, err := sql.Open("pgx", "postgres://user:pass@host/db")
//	...
//	src, err := auth.NewDB(db, auth.DBOptions{})
//
// It is a module of its own so that the library's go.mod names no SQL
// driver: a program that wants another driver (MySQL, a cgo SQLite)
// imports that one instead and never downloads these. The package has no
// API; its tests run auth.DB against both drivers (PostgreSQL from
// HAWSER_TEST_PG_DSN: see scripts/test-drivers.sh and scripts/postgres.sh).
package drivers
