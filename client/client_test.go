package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/client"
	"github.com/hawser-rpc/hawser/server"
)

var users = []auth.UserConfig{
	{Username: "admin", Password: "a", Permissions: []string{"ALL"}},
	{Username: "reader", Password: "r", Permissions: []string{"InvokeRpc.kv.Get", "InvokeRpc.kv.Watch"}},
	{Username: "lower", Password: "l", Permissions: []string{"invokerpc.kv.Get", "startflow.transfer"}},
	{Username: "flowuser", Password: "t", Permissions: []string{"StartFlow.transfer"}},
	{Username: "flows", Password: "f", Permissions: []string{"InvokeRpc.startFlow"}},
	{Username: "nobody", Password: "n"},
}

// One end-to-end check per permission rule: allowed calls run, denied ones
// fail with ErrPermissionDenied before the handler runs, and a user with no
// permissions can only ask the platform version.
func TestPermissionsEndToEnd(t *testing.T) {
	n := startNode(t, service(t, auth.LoginLimit{}, users...))
	ctx := context.Background()
	type action struct {
		name string // the handler's counter
		do   func(c *client.Conn) error
	}
	actions := []action{
		{"kv.Get", func(c *client.Conn) error { _, err := kvGet.Call(ctx, c, &u64{1}); return err }},
		{"kv.Put", func(c *client.Conn) error { _, err := kvPut.Call(ctx, c, &u64{1}); return err }},
		{"kv.Watch", func(c *client.Conn) error {
			r, err := kvWatch.Open(ctx, c, &u64{3})
			if err != nil {
				return err
			}
			defer r.Close()
			for i := 0; ; i++ {
				it, err := r.Recv()
				if errors.Is(err, io.EOF) {
					if i != 3 {
						return fmt.Errorf("%d items", i)
					}
					return nil
				}
				if err != nil {
					return err
				}
				if it.V != uint64(i) {
					return fmt.Errorf("item %d is %d", i, it.V)
				}
			}
		}},
		{"transfer", func(c *client.Conn) error { _, err := transfer.Start(ctx, c, &u64{1}); return err }},
		{"audit", func(c *client.Conn) error { _, err := audit.Start(ctx, c, &u64{1}); return err }},
	}
	allowed := map[string][]string{
		"admin":    {"kv.Get", "kv.Put", "kv.Watch", "transfer", "audit"},
		"reader":   {"kv.Get", "kv.Watch"},
		"lower":    {"kv.Get", "transfer"},
		"flowuser": {"transfer"},
		"flows":    {"transfer", "audit"},
		"nobody":   nil,
	}
	for _, u := range users {
		t.Run(u.Username, func(t *testing.T) {
			c := n.dial(t, u.Username, u.Password)
			if v, err := c.QueryPlatformVersion(ctx); err != nil || v != 3 {
				t.Fatalf("platform version %d, %v", v, err)
			}
			for _, a := range actions {
				want := false
				for _, ok := range allowed[u.Username] {
					want = want || ok == a.name
				}
				before := n.count(a.name)
				err := a.do(c)
				ran := n.count(a.name) - before
				switch {
				case want && err != nil:
					t.Errorf("%s: %v, want allowed", a.name, err)
				case want && ran != 1:
					t.Errorf("%s: the handler ran %d times", a.name, ran)
				case !want && !errors.Is(err, hawser.ErrPermissionDenied):
					t.Errorf("%s: %v, want ErrPermissionDenied", a.name, err)
				case !want && ran != 0:
					t.Errorf("%s: denied, but the handler ran", a.name)
				}
			}
		})
	}
	if !strings.Contains(n.logs.String(), "user=nobody") {
		t.Error("the server's log has no line naming user nobody")
	}
}

// A handler reads the caller's identity from its context, and the
// server's log line for a denied call names the user.
func TestIdentityInContextAndLog(t *testing.T) {
	svc := service(t, auth.LoginLimit{}, users...)
	var got sync.Map
	whoami := hawser.NewMethod[[]byte, []byte]("whoami")
	n := startNode(t, svc)
	// A second node with the whoami method registered before Serve.
	srv, err := server.New(server.Config{BindAddr: "127.0.0.1", Port: -1, Auth: svc, Logger: nil})
	if err != nil {
		t.Fatal(err)
	}
	must(t, server.Handle(srv, whoami, func(ctx context.Context, _ []byte) ([]byte, error) {
		u, ok := server.User(ctx)
		got.Store(u, ok)
		return []byte(u), nil
	}))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	<-srv.Ready()
	defer func() { _ = srv.Close(); <-done }()
	c, err := client.Start(context.Background(), srv.Addr().String(), "admin", "a", client.Plaintext())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out, err := whoami.Call(context.Background(), c, nil)
	if err != nil || string(out) != "admin" {
		t.Fatalf("whoami: %q, %v", out, err)
	}
	if ok, _ := got.Load("admin"); ok != true {
		t.Fatal("server.User did not report admin")
	}

	r := n.dial(t, "reader", "r")
	if _, err := kvPut.Call(context.Background(), r, &u64{1}); !errors.Is(err, hawser.ErrPermissionDenied) {
		t.Fatalf("kv.Put as reader: %v", err)
	}
	if !logLine(n.logs.String(), "call denied", "user=reader", "method=kv.Put") {
		t.Fatalf("no log line for the denied call naming the user:\n%s", n.logs.String())
	}
	a := n.dial(t, "admin", "a")
	if _, err := kvPanic.Call(context.Background(), a, &u64{1}); err == nil {
		t.Fatal("a panicking handler answered")
	}
	if !logLine(n.logs.String(), "handler panicked", "user=admin") {
		t.Fatalf("no log line for the panic naming the user:\n%s", n.logs.String())
	}
}

// logLine reports whether one line of log holds every part.
func logLine(log string, parts ...string) bool {
	for _, l := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
}

// Login failures: the same error for an unknown user and a wrong
// password; the per-source limit trips, refuses even the right password,
// and recovers after the lockout.
func TestLoginFailuresAndLimit(t *testing.T) {
	svc := service(t, auth.LoginLimit{Failures: 3, Window: time.Minute, Lockout: 300 * time.Millisecond}, users...)
	n := startNode(t, svc)
	start := func(user, pass string) error {
		c, err := client.Start(context.Background(), n.addr, user, pass, client.WithPinnedCertificate(n.cert.CertPEM))
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	wrong, unknown := start("admin", "bad"), start("mallory", "a")
	for _, err := range []error{wrong, unknown} {
		if !errors.Is(err, hawser.ErrLoginFailed) || !errors.Is(err, hawser.ErrTransport) {
			t.Fatalf("got %v, want ErrLoginFailed", err)
		}
	}
	if wrong.Error() != unknown.Error() {
		t.Fatalf("the errors differ:\n%v\n%v", wrong, unknown)
	}
	if err := start("admin", "bad"); !errors.Is(err, hawser.ErrLoginFailed) { // the third failure locks
		t.Fatalf("third failure: %v", err)
	}
	if err := start("admin", "a"); !errors.Is(err, hawser.ErrLoginLimited) {
		t.Fatalf("right password during the lockout: %v, want ErrLoginLimited", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := start("admin", "a")
		if err == nil {
			break
		}
		if !errors.Is(err, hawser.ErrLoginLimited) || time.Now().After(deadline) {
			t.Fatalf("after the lockout: %v", err)
		}
		runtime.Gosched()
	}
	if st := svc.Stats(); st.Failed != 3 || st.Limited == 0 || st.Logins == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A client that requires a newer platform version fails to connect with
// an error naming both; a method declared Since a newer version fails
// locally, sending no byte.
func TestVersionChecks(t *testing.T) {
	n := startNode(t, service(t, auth.LoginLimit{}, users...))
	_, err := client.Start(context.Background(), n.addr, "admin", "a", client.WithPinnedCertificate(n.cert.CertPEM), client.MinimumPlatformVersion(4))
	var ve *hawser.VersionError
	if !errors.Is(err, hawser.ErrUnsupported) || !errors.As(err, &ve) || ve.Required != 4 || ve.Server != 3 {
		t.Fatalf("got %v, want a VersionError 4 > 3", err)
	}
	if !strings.Contains(err.Error(), "4") || !strings.Contains(err.Error(), "3") {
		t.Fatalf("the error does not name both versions: %v", err)
	}

	p := newProxy(t, n.addr)
	c, err := client.Start(context.Background(), p.addr, "admin", "a", client.WithPinnedCertificate(n.cert.CertPEM))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.PlatformVersion() != 3 {
		t.Fatalf("PlatformVersion %d", c.PlatformVersion())
	}
	if _, err := kvGet.Call(context.Background(), c, &u64{1}); err != nil { // settle the connection
		t.Fatal(err)
	}
	before := p.up.Load()
	_, err = newer.Call(context.Background(), c, &u64{1})
	if !errors.Is(err, hawser.ErrUnsupported) || !errors.As(err, &ve) || ve.Name != "kv.Newer" {
		t.Fatalf("Since(4) on a version-3 server: %v", err)
	}
	if sent := p.up.Load() - before; sent != 0 {
		t.Fatalf("the refused call sent %d bytes", sent)
	}
	if n.count("kv.Newer") != 0 {
		t.Fatal("the handler ran")
	}
	if _, err := kvGet.Call(context.Background(), c, &u64{1}); err != nil || p.up.Load() == before {
		t.Fatalf("a normal call after it: %v, %d bytes sent", err, p.up.Load()-before)
	}
}

// 1,000 concurrent calls from 64 goroutines through one connection, each
// checked against the user's permissions, complete; the goroutines are
// back to their number before once the connection is closed.
func TestConcurrentCallsOneConn(t *testing.T) {
	n := startNode(t, service(t, auth.LoginLimit{}, users...))
	before := n.count("kv.Get")
	base := goroutines()
	c, err := client.Start(context.Background(), n.addr, "reader", "r", client.WithPinnedCertificate(n.cert.CertPEM))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < 1000; i += 64 {
				r, err := kvGet.Call(context.Background(), c, &u64{uint64(i)})
				if err == nil && r.V != uint64(i)+1 {
					err = fmt.Errorf("call %d answered %d", i, r.V)
				}
				if err != nil {
					errs <- err
				}
			}
			// and one denied call per goroutine
			if _, err := kvPut.Call(context.Background(), c, &u64{1}); !errors.Is(err, hawser.ErrPermissionDenied) {
				errs <- fmt.Errorf("kv.Put: %w", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := n.count("kv.Get") - before; got != 1000 {
		t.Fatalf("%d calls ran", got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for goroutines() > base || n.srv.Conns() != 0 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", goroutines(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
}

// goroutines counts the goroutines but the idle workers of servers' worker
// pools, which outlive a connection by design (bounded by MaxWorkers).
func goroutines() int {
	buf := make([]byte, 4<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if !strings.Contains(g, "internal/workers.(*Pool).work") {
			n++
		}
	}
	return n
}

// TLS is verified: a pinned certificate that is not the server's fails;
// a CA-verified connection works; Use closes after its function.
func TestTLSVerification(t *testing.T) {
	n := startNode(t, service(t, auth.LoginLimit{}, users...))
	other, err := certgenSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Start(context.Background(), n.addr, "admin", "a", client.WithPinnedCertificate(other))
	if !errors.Is(err, hawser.ErrTransport) || !strings.Contains(err.Error(), "pinned") {
		t.Fatalf("wrong pin: %v", err)
	}
	var seen *client.Conn
	err = client.Use(context.Background(), n.addr, "admin", "a", func(c *client.Conn) error {
		seen = c
		_, err := kvGet.Call(context.Background(), c, &u64{1})
		return err
	}, client.WithCA(certPool(n.cert), "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-seen.Done():
	default:
		t.Fatal("Use did not close the connection")
	}
	if _, err := client.Start(context.Background(), n.addr, "admin", "a"); err == nil {
		t.Fatal("Start without a TLS choice succeeded")
	}
}

// A plaintext client port on a non-loopback address is a startup error
// unless client-rpc-insecure-plaintext says so; the client refuses to send
// a password in clear to one too.
func TestPlaintextRefused(t *testing.T) {
	svc := service(t, auth.LoginLimit{}, users...)
	_, err := server.New(server.Config{BindAddr: "0.0.0.0", Port: -1, Auth: svc})
	if !errors.Is(err, server.ErrPlaintextClient) || !strings.Contains(err.Error(), "client-rpc-insecure-plaintext") {
		t.Fatalf("plaintext on 0.0.0.0: %v", err)
	}
	if _, err := server.New(server.Config{BindAddr: "0.0.0.0", Port: -1, Auth: svc, InsecurePlaintext: true}); err != nil {
		t.Fatalf("with InsecurePlaintext: %v", err)
	}
	if _, err := server.New(server.Config{BindAddr: "127.0.0.1", Port: -1, Auth: svc}); err != nil {
		t.Fatalf("plaintext on loopback: %v", err)
	}
	if _, err := client.Start(context.Background(), "10.1.2.3:7912", "admin", "a", client.Plaintext()); err == nil || !strings.Contains(err.Error(), "clear") {
		t.Fatalf("client plaintext to a non-loopback address: %v", err)
	}
}

// Hashed passwords over a real login: a $shiro1$ and an $argon2id$ user of
// one SHIRO_1_CRYPT source (both formats are accepted) log in; a wrong
// password does not.
func TestHashedPasswords(t *testing.T) {
	shiro, err := auth.HashShiro1("sh-pw", "SHA-512", 1000)
	if err != nil {
		t.Fatal(err)
	}
	argon, err := auth.HashArgon2id("ar-pw", auth.Argon2Params{Memory: 8 << 10, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	src, err := auth.NewInMemory(auth.EncryptionShiro1, []auth.UserConfig{
		{Username: "s", Password: shiro, Permissions: []string{"ALL"}},
		{Username: "a", Password: argon, Permissions: []string{"ALL"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := auth.New(auth.Config{Source: src, Encryption: auth.EncryptionShiro1})
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, svc)
	for _, u := range [][2]string{{"s", "sh-pw"}, {"a", "ar-pw"}} {
		c := n.dial(t, u[0], u[1])
		if _, err := kvGet.Call(context.Background(), c, &u64{1}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Start(context.Background(), n.addr, u[0], u[1]+"x", client.WithPinnedCertificate(n.cert.CertPEM)); !errors.Is(err, hawser.ErrLoginFailed) {
			t.Fatalf("%s with a wrong password: %v", u[0], err)
		}
	}
}
