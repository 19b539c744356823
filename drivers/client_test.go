package drivers_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/client"
	"github.com/hawser-rpc/hawser/config"
	"github.com/hawser-rpc/hawser/internal/certgen"
	"github.com/hawser-rpc/hawser/server"
)

var (
	kvGet    = hawser.NewMethod[[]byte, []byte]("kv.Get")
	kvDelete = hawser.NewMethod[[]byte, []byte]("kv.Delete")
)

// serveClients starts a client port over TLS with svc's users, serving
// kv.Get and kv.Delete, and returns a client Option that trusts it.
func serveClients(t *testing.T, cfg server.Config) (string, client.Option) {
	t.Helper()
	pair, err := certgen.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.BindAddr, cfg.Port, cfg.Certificate = "127.0.0.1", -1, &pair.Cert
	cfg.CertFile, cfg.KeyFile = "", ""
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	echo := func(_ context.Context, b []byte) ([]byte, error) { return append([]byte(nil), b...), nil }
	if err := server.Handle(srv, kvGet, echo); err != nil {
		t.Fatal(err)
	}
	if err := server.Handle(srv, kvDelete, echo); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	<-srv.Ready()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, server.ErrServerClosed) {
			t.Error(err)
		}
	})
	return srv.Addr().String(), client.WithPinnedCertificate(pair.CertPEM)
}

func login(t *testing.T, addr string, opt client.Option) *client.Conn {
	t.Helper()
	c, err := client.Start(context.Background(), addr, "alice", "pw-alice", opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func deleteAllowed(t *testing.T, c *client.Conn) bool {
	t.Helper()
	_, err := kvDelete.Call(context.Background(), c, []byte("k"))
	if err != nil && !errors.Is(err, hawser.ErrPermissionDenied) {
		t.Fatal(err)
	}
	return err == nil
}

// A role's permission added or removed in the database takes effect on a
// logged-in client's next call, without a restart; behind a cache, after
// the entry expires, and a second login within it does not query.
func runClientSuite(t *testing.T, b backend) {
	t.Run("no cache", func(t *testing.T) {
		e := newEnv(t, b, auth.DBOptions{})
		svc, err := auth.New(auth.Config{Source: e.src, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		addr, opt := serveClients(t, server.Config{Auth: svc})
		c := login(t, addr, opt)
		if _, err := kvGet.Call(context.Background(), c, []byte("k")); err != nil {
			t.Fatalf("kv.Get from role reader: %v", err)
		}
		if deleteAllowed(t, c) {
			t.Fatal("kv.Delete allowed before the grant")
		}
		e.exec(`INSERT INTO {p}roles_permissions (note, role_name, permission) VALUES ('', 'reader', 'InvokeRpc.kv.Delete')`)
		if !deleteAllowed(t, c) {
			t.Fatal("kv.Delete denied after the grant")
		}
		e.exec(`DELETE FROM {p}roles_permissions WHERE permission = ?`, "InvokeRpc.kv.Delete")
		if deleteAllowed(t, c) {
			t.Fatal("kv.Delete allowed after the revocation")
		}
	})
	t.Run("cache", func(t *testing.T) {
		e := newEnv(t, b, auth.DBOptions{})
		cached := auth.NewCached(e.src, auth.CacheConfig{ExpireAfter: time.Second})
		svc, err := auth.New(auth.Config{Source: cached, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		addr, opt := serveClients(t, server.Config{Auth: svc})
		q0 := e.src.Queries()
		c := login(t, addr, opt)
		q1 := e.src.Queries()
		login(t, addr, opt)
		if deleteAllowed(t, c) {
			t.Fatal("kv.Delete allowed before the grant")
		}
		if q1-q0 != 1 || e.src.Queries() != q1 {
			t.Fatalf("queries: %d for the first login, %d for a second login and a check; want 1 and 0", q1-q0, e.src.Queries()-q1)
		}
		e.exec(`INSERT INTO {p}roles_permissions (note, role_name, permission) VALUES ('', 'reader', 'InvokeRpc.kv.Delete')`)
		granted := time.Now()
		for !deleteAllowed(t, c) {
			if time.Since(granted) > 30*time.Second {
				t.Fatal("the grant never took effect")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if e.src.Queries() == q1 {
			t.Fatal("the grant took effect without a query")
		}
	})
}

func TestClientPortSQLite(t *testing.T) { runClientSuite(t, sqlite) }

func TestClientPortPostgreSQL(t *testing.T) { runClientSuite(t, postgres(t)) }

// The node's YAML opens the DB source itself: type DB, driver sqlite.
func TestClientConfigFromNodeSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.db")
	doc := "security:\n  auth-service:\n    data-source:\n      type: DB\n      connection: {driver: sqlite, dsn: \"file:" + path + "\"}\n"
	seed, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`CREATE TABLE users (username TEXT PRIMARY KEY, password TEXT)`,
		`CREATE TABLE user_roles (username TEXT, role_name TEXT)`,
		`CREATE TABLE roles_permissions (role_name TEXT, permission TEXT)`,
		`INSERT INTO users VALUES ('alice', 'pw-alice')`,
		`INSERT INTO user_roles VALUES ('alice', 'ops')`,
		`INSERT INTO roles_permissions VALUES ('ops', 'InvokeRpc.kv.Get')`,
	} {
		if _, err := seed.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	_ = seed.Close()
	n, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	cfg, release, err := server.ClientConfigFromNode(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = release() })
	addr, opt := serveClients(t, cfg)
	c := login(t, addr, opt)
	if _, err := kvGet.Call(context.Background(), c, []byte("k")); err != nil {
		t.Fatal(err)
	}
	if deleteAllowed(t, c) {
		t.Fatal("kv.Delete allowed")
	}
}
