package conn

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
)

// loginServer starts a client RPC acceptor whose Authenticate accepts
// alice/right and refuses everything else with hawser.ErrLoginFailed.
func loginServer(t *testing.T, r *testRouter, asked *atomic.Int32) *testServer {
	return startServer(t, r, func(c *Config) {
		c.ClusterKey = nil
		c.PlatformVersion = 7
		c.Authenticate = func(_ context.Context, l LoginRequest) (any, error) {
			asked.Add(1)
			if l.Username == "alice" && l.Password == "right" && l.Remote != nil {
				return "session-of-alice", nil
			}
			return nil, hawser.ErrLoginFailed
		}
	})
}

func loginConfig(user, pass string) *Config {
	return &Config{TLS: ClientTLS("", nil), Login: &Login{Username: user, Password: pass}, DialRead: testDialRead}
}

// A dialer logs in inside the handshake: the acceptor's connection carries
// the user and the session, the dialer learns the platform version, and
// calls run.
func TestLoginHandshake(t *testing.T) {
	r := newTestRouter()
	var asked atomic.Int32
	var seen atomic.Value
	m := r.handle("whoami", &Route{Unary: func(ctx context.Context, _ *Request) ([]byte, error) {
		c, _ := FromContext(ctx)
		seen.Store(c.Session())
		return []byte(c.User()), nil
	}})
	srv := loginServer(t, r, &asked)
	c, err := Dial(context.Background(), newClientEngine(t), srv.addr(), loginConfig("alice", "right"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.PeerPlatformVersion() != 7 {
		t.Fatalf("platform version %d, want 7", c.PeerPlatformVersion())
	}
	out, err := c.Call(context.Background(), m, nil)
	if err != nil || string(out) != "alice" {
		t.Fatalf("whoami = %q, %v", out, err)
	}
	if seen.Load() != "session-of-alice" {
		t.Fatalf("session %v", seen.Load())
	}
}

// Refused logins: a wrong password, a cluster-key dialer on a client port,
// a client on a cluster port. Each gets a typed error and no handler runs.
func TestLoginRefused(t *testing.T) {
	r := newTestRouter()
	var ran, asked atomic.Int32
	r.handle("touch", &Route{Unary: func(context.Context, *Request) ([]byte, error) {
		ran.Add(1)
		return nil, nil
	}})
	client := loginServer(t, r, &asked)
	cluster := startServer(t, r, nil)
	eng := newClientEngine(t)
	cases := []struct {
		name string
		addr string
		cfg  *Config
		want error
	}{
		{"wrong password", client.addr(), loginConfig("alice", "wrong"), hawser.ErrLoginFailed},
		{"unknown user", client.addr(), loginConfig("mallory", "right"), hawser.ErrLoginFailed},
		{"cluster key on the client port", client.addr(), clientConfig(), ErrAuth},
		{"login on the cluster port", cluster.addr(), loginConfig("alice", "right"), ErrAuth},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Dial(context.Background(), eng, tc.addr, tc.cfg)
			if err == nil {
				_ = c.Close()
				t.Fatal("dial succeeded")
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrAuth) || !errors.Is(err, hawser.ErrTransport) {
				t.Fatalf("got %v, want %v and ErrAuth", err, tc.want)
			}
		})
	}
	if asked.Load() != 2 {
		t.Fatalf("Authenticate asked %d times, want 2", asked.Load())
	}
	if ran.Load() != 0 {
		t.Fatal("a handler ran")
	}
	if client.waitErr(ErrAuth, time.Second) == nil {
		t.Fatal("the acceptor recorded no ErrAuth")
	}
}

// Login and cluster-key configurations do not mix.
func TestLoginConfig(t *testing.T) {
	cfg := loginConfig("alice", "x")
	cfg.ClusterKey = testKey
	if _, err := cfg.resolved(true); !errors.Is(err, ErrConfig) {
		t.Fatalf("login with a cluster key: %v", err)
	}
	if _, err := loginConfig("", "x").resolved(true); !errors.Is(err, ErrConfig) {
		t.Fatalf("empty username: %v", err)
	}
	if _, err := (&Config{TLS: ClientTLS("", nil)}).resolved(true); !errors.Is(err, ErrConfig) {
		t.Fatalf("neither key nor login: %v", err)
	}
}
