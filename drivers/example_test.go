package drivers_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/hawser-rpc/hawser/auth"
	_ "github.com/hawser-rpc/hawser/drivers" // links "sqlite" and "pgx"
)

// Example reads users and their permissions from SQLite tables in Corda's
// layout (with PostgreSQL: sql.Open("pgx", dsn); the placeholder style is
// detected either way).
func Example() {
	dir, err := os.MkdirTemp("", "hawser-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", filepath.Join(dir, "users.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	for _, stmt := range []string{
		`CREATE TABLE users (username TEXT PRIMARY KEY, password TEXT)`,
		`CREATE TABLE user_roles (username TEXT, role_name TEXT)`,
		`CREATE TABLE roles_permissions (role_name TEXT, permission TEXT)`,
		`INSERT INTO users VALUES ('alice', 'secret')`,
		`INSERT INTO user_roles VALUES ('alice', 'reader')`,
		`INSERT INTO roles_permissions VALUES ('reader', 'InvokeRpc.kv.Get')`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			log.Fatal(err)
		}
	}

	src, err := auth.NewDB(db, auth.DBOptions{})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if err := src.Ping(ctx); err != nil { // at startup: the DSN and the tables
		log.Fatal(err)
	}
	u, found, err := src.User(ctx, "alice")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(found, u.Permissions.AllowsMethod("kv.Get"), u.Permissions.AllowsMethod("kv.Put"))
	_, found, _ = src.User(ctx, "mallory")
	fmt.Println(found)
	// Output:
	// true true false
	// false
}
