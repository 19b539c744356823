package server

import (
	"strings"
	"testing"

	"github.com/hawser-rpc/hawser/config"
)

func TestClientConfigFromNode(t *testing.T) {
	n, err := config.Parse([]byte("rpc-users: [{username: ops, password: pw, permissions: [ALL]}]\nclient-rpc-port: 7999\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, release, err := ClientConfigFromNode(n)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if cfg.Auth == nil || cfg.Port != 7999 || cfg.BindAddr != "127.0.0.1" {
		t.Fatalf("%+v", cfg)
	}
	n, err = config.Parse([]byte("security: {auth-service: {data-source: {type: DB, connection: {driver: nosuch, dsn: x}}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ClientConfigFromNode(n); err == nil || !strings.Contains(err.Error(), "not linked") {
		t.Fatalf("an unlinked driver: %v", err)
	}
	if _, _, err := ClientConfigFromNode(config.Node{}); err == nil {
		t.Fatal("no users: no error")
	}
}
