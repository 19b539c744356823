package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	n, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.BindAddr != "0.0.0.0" || n.Port != 7911 || n.Timeout.Duration() != time.Second ||
		n.InactivityTimeout.Duration() != 300*time.Second || n.RetriesMax != 5 ||
		n.BackoffMax.Duration() != 180*time.Second {
		t.Fatalf("defaults: %+v", n)
	}
	if n.ClusterName != "hawser" || n.GossipProbeInterval.Duration() != time.Second ||
		n.GossipProbeTimeout.Duration() != 500*time.Millisecond || n.GossipInterval.Duration() != 200*time.Millisecond ||
		n.GossipPushPullInterval.Duration() != 30*time.Second || n.GossipPacketSize != 1400 ||
		n.SeedNodes != nil || n.DataDir != "" || n.GossipAdvertiseAddr != "" {
		t.Fatalf("gossip defaults: %+v", n)
	}
}

func TestExactKeys(t *testing.T) {
	doc := `
rpc-bind-addr: 10.0.0.2
rpc-port: 7999
rpc-cert-path: /etc/hawser/cert.pem
rpc-key-path: /etc/hawser/key.pem
rpc-tls-domain: node.cluster.internal
rpc-ca-path: /etc/hawser/ca.pem
rpc-inactivity-timeout: 60000
rpc-timeout: 250
rpc-retries-max: 3
rpc-backoff-max: 5000
cluster-key: a-very-secret-cluster-key
node-id: node-2
cluster-name: prod-eu
seed-nodes: [10.0.0.1:7911, "10.0.0.3", "[fd00::4]:7911", node-5.cluster.internal]
data-dir: /var/lib/hawser
gossip-advertise-addr: 10.0.0.2
gossip-probe-interval: 2000
gossip-probe-timeout: 800
gossip-interval: 300
gossip-push-pull-interval: 60000
gossip-packet-size: 1300
client-rpc-bind-addr: 10.0.0.2
client-rpc-port: 7998
client-rpc-cert-path: /etc/hawser/client-cert.pem
client-rpc-key-path: /etc/hawser/client-key.pem
client-rpc-insecure-plaintext: false
client-rpc-timeout: 3000
client-rpc-login-limit: {failures: 5, window: 30000, lockout: 120000}
client-rpc-observables: {buffer-bytes: 1048576, overflow: block, max-subscriptions: 64}
client-rpc-dedup: {window: 120000, max-entries: 500, max-reply-bytes: 4096, max-bytes: 1048576}
security:
  auth-service:
    data-source:
      type: DB
      password-encryption: SHIRO_1_CRYPT
      connection: {driver: pgx, dsn: "postgres://hawser@127.0.0.1/users"}
    options:
      cache: {expire-after-secs: 120, max-entries: 10000}
`
	n, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := Node{BindAddr: "10.0.0.2", Port: 7999, CertPath: "/etc/hawser/cert.pem", KeyPath: "/etc/hawser/key.pem",
		TLSDomain: "node.cluster.internal", CAPath: "/etc/hawser/ca.pem", InactivityTimeout: 60000, Timeout: 250,
		RetriesMax: 3, BackoffMax: 5000, ClusterKey: "a-very-secret-cluster-key", NodeID: "node-2",
		ClusterName: "prod-eu", SeedNodes: []string{"10.0.0.1:7911", "10.0.0.3", "[fd00::4]:7911", "node-5.cluster.internal"},
		DataDir: "/var/lib/hawser", GossipAdvertiseAddr: "10.0.0.2", GossipProbeInterval: 2000, GossipProbeTimeout: 800,
		GossipInterval: 300, GossipPushPullInterval: 60000, GossipPacketSize: 1300,
		ClientBindAddr: "10.0.0.2", ClientPort: 7998, ClientCertPath: "/etc/hawser/client-cert.pem",
		ClientKeyPath: "/etc/hawser/client-key.pem", ClientTimeout: 3000, ClientLoginLimit: LoginLimit{Failures: 5, Window: 30000, Lockout: 120000},
		ClientObservables: Observables{BufferBytes: 1 << 20, Overflow: "block", MaxSubscriptions: 64},
		ClientDedup:       Dedup{Window: 120000, MaxEntries: 500, MaxReplyBytes: 4096, MaxBytes: 1 << 20},
		Security: &Security{AuthService: AuthService{
			DataSource: DataSource{Type: "DB", PasswordEncryption: "SHIRO_1_CRYPT",
				Connection: &Connection{Driver: "pgx", DSN: "postgres://hawser@127.0.0.1/users"}},
			Options: AuthOptions{Cache: &Cache{ExpireAfterSecs: 120, MaxEntries: 10000}},
		}}}
	if !reflect.DeepEqual(n, want) {
		t.Fatalf("got %+v\nwant %+v", n, want)
	}
}

func TestRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"typo": "rpc-prot: 7911\n",
		"rpc-users and security": "rpc-users: [{username: a, password: b}]\n" +
			"security: {auth-service: {data-source: {type: INMEMORY, users: [{username: c, password: d}]}}}\n",
		"plaintext client port off loopback": "client-rpc-bind-addr: 0.0.0.0\nrpc-users: [{username: a, password: b}]\n",
		"malformed permission":               "rpc-users: [{username: a, password: b, permissions: [InvokeRpc]}]\n",
		"unknown permission action":          "rpc-users: [{username: a, password: b, permissions: [CallRpc.x]}]\n",
		"data source type":                   "security: {auth-service: {data-source: {type: LDAP}}}\n",
		"DB without connection":              "security: {auth-service: {data-source: {type: DB}}}\n",
		"bad password-encryption":            "security: {auth-service: {data-source: {type: INMEMORY, password-encryption: MD5}}}\n",
		"cache without expiry":               "security: {auth-service: {data-source: {type: INMEMORY}, options: {cache: {max-entries: 5}}}}\n",
		"duplicate user":                     "rpc-users: [{username: a, password: b}, {username: a, password: c}]\n",
		"cert without key":                   "client-rpc-cert-path: c.pem\n",
		"unknown security key":               "security: {auth-service: {data-source: {type: INMEMORY, user: []}}}\n",
		"camel case":                         "rpcPort: 7911\n",
		"bad port":                           "rpc-port: 70000\n",
		"short key":                          "cluster-key: short\n",
		"not a map":                          "- a\n- b\n",
		"wrong type":                         "rpc-timeout: soon\n",
		"negative ms":                        "rpc-timeout: -5\n",
		"seed port":                          "seed-nodes: [10.0.0.1:99999]\n",
		"seed empty":                         "seed-nodes: [\"\"]\n",
		"seed colon":                         "seed-nodes: [\"10.0.0.1:\"]\n",
		"seed scalar":                        "seed-nodes: 10.0.0.1\n",
		"timeout >= interval":                "gossip-probe-interval: 500\ngossip-probe-timeout: 500\n",
		"negative gossip":                    "gossip-interval: -1\n",
		"tiny packets":                       "gossip-packet-size: 512\n",
		"huge packets":                       "gossip-packet-size: 70000\n",
		"advertise port":                     "gossip-advertise-addr: 10.0.0.2:0\n",
		"overflow policy":                    "client-rpc-observables: {overflow: drop}\n",
		"negative buffer":                    "client-rpc-observables: {buffer-bytes: -1}\n",
		"unknown observables key":            "client-rpc-observables: {buffer: 5}\n",
		"dedup window":                       "client-rpc-dedup: {window: -2}\n",
		"negative dedup bound":               "client-rpc-dedup: {max-entries: -1}\n",
	} {
		if _, err := Parse([]byte(doc)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

// The two startup errors of client RPC explain themselves.
func TestClientStartupErrors(t *testing.T) {
	_, err := Parse([]byte("rpc-users: [{username: a, password: b}]\nsecurity: {auth-service: {data-source: {type: INMEMORY}}}\n"))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "rpc-users and security are both set") {
		t.Fatalf("both sources: %v", err)
	}
	_, err = Parse([]byte("client-rpc-bind-addr: 0.0.0.0\nrpc-users: [{username: a, password: b}]\n"))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "in clear") || !strings.Contains(err.Error(), "client-rpc-insecure-plaintext") {
		t.Fatalf("plaintext: %v", err)
	}
	for _, ok := range []string{
		"client-rpc-bind-addr: 0.0.0.0\nclient-rpc-insecure-plaintext: true\nrpc-users: [{username: a, password: b}]\n",
		"client-rpc-bind-addr: 0.0.0.0\nclient-rpc-cert-path: c\nclient-rpc-key-path: k\nrpc-users: [{username: a, password: b}]\n",
		"rpc-users: [{username: a, password: b, permissions: [ALL, invokerpc.kv.Get, StartFlow.pay, InvokeRpc.startFlow]}]\n",
	} {
		if _, err := Parse([]byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}
