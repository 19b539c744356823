package server

import (
	"strings"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser"
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
	if cfg.Observables != (ObservableConfig{}) || cfg.Dedup != (DedupConfig{}) {
		t.Fatalf("unset keys: %+v, %+v; want the zero values (the server's defaults)", cfg.Observables, cfg.Dedup)
	}
	n, err = config.Parse([]byte("rpc-users: [{username: ops, password: pw}]\n" +
		"client-rpc-observables: {buffer-bytes: 65536, overflow: BLOCK, max-subscriptions: 8}\n" +
		"client-rpc-dedup: {window: 1500, max-entries: 7, max-reply-bytes: 100, max-bytes: 9000}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg, _, err = ClientConfigFromNode(n); err != nil {
		t.Fatal(err)
	}
	if want := (ObservableConfig{BufferBytes: 65536, Overflow: hawser.OverflowBlock, MaxSubscriptions: 8}); cfg.Observables != want {
		t.Fatalf("observables %+v, want %+v", cfg.Observables, want)
	}
	if want := (DedupConfig{Window: 1500 * time.Millisecond, MaxEntries: 7, MaxReplyBytes: 100, MaxBytes: 9000}); cfg.Dedup != want {
		t.Fatalf("dedup %+v, want %+v", cfg.Dedup, want)
	}
	n, err = config.Parse([]byte("rpc-users: [{username: ops, password: pw}]\nclient-rpc-observables: {overflow: kick}\nclient-rpc-dedup: {window: -1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg, _, err = ClientConfigFromNode(n); err != nil {
		t.Fatal(err)
	}
	if cfg.Observables.Overflow != hawser.OverflowKick || cfg.Dedup.Window >= 0 {
		t.Fatalf("kick and dedup off: %+v, %+v", cfg.Observables, cfg.Dedup)
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
