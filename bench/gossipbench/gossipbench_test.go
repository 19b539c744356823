package gossipbench

import (
	"context"
	"encoding/json"
	"flag"
	"testing"
	"time"
)

// A smoke run of both implementations: 8 nodes, a fast probe interval, a
// few seconds, with loss and a stall.
func TestSmoke(t *testing.T) {
	for _, impl := range Impls {
		t.Run(impl, func(t *testing.T) {
			r, err := Run(context.Background(), Options{Impl: impl, Nodes: 8, Loss: 0.05,
				Stall: 300 * time.Millisecond, Duration: 6 * time.Second, ProbeInterval: 200 * time.Millisecond, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", r)
			if r.Scenario != "gossip" || r.Impl != impl || r.Nodes != 8 {
				t.Fatalf("labels: %+v", r)
			}
			// The harness, not the implementations, is under test: under
			// the race detector and a 200 ms probe interval either may
			// miss a detection, a join or declare the stalled node dead.
			if r.Undetected == 7 || r.DetectP50Ms <= 0 || r.DetectP99Ms < r.DetectP50Ms {
				t.Fatalf("detection: %+v", r)
			}
			if r.JoinMissing == 7 || r.JoinMs <= 0 {
				t.Fatalf("join: %+v", r)
			}
			if r.BytesPerNodeS <= 0 || r.UDPBytesPerNodeS <= 0 || r.PacketsPerNodeS <= 0 {
				t.Fatalf("traffic: %+v", r)
			}
			// The join is a push-pull over TCP inside the window.
			if r.WireTCPBytesPerNodeS <= 0 || r.TCPConnsPerNodeMin <= 0 ||
				r.WireBytesPerNodeS != r.UDPBytesPerNodeS+r.WireTCPBytesPerNodeS {
				t.Fatalf("wire: %+v", r)
			}
			// memberlist's streams are bare TCP: the relay and the counted
			// stream bytes see the same bytes, up to the exchanges in flight
			// at the ends of the window.
			if impl == "memberlist" && (r.WireTCPBytesPerNodeS < r.StreamBytesPerNodeS/2 || r.WireTCPBytesPerNodeS > r.StreamBytesPerNodeS*3/2) {
				t.Fatalf("memberlist: %.0f B/node/s through the relays, %.0f counted on its streams", r.WireTCPBytesPerNodeS, r.StreamBytesPerNodeS)
			}
		})
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, o := range []Options{{Impl: "nope"}, {Impl: "hawser", Nodes: 2}, {Impl: "hawser", Loss: 1}} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Fatalf("%+v accepted", o)
		}
	}
}

var (
	full  = flag.Bool("full", false, "run the full comparison (64 nodes, 5% loss, 60 s, with and without a stall)")
	runs  = flag.Int("runs", 1, "TestFull: runs of each configuration (seeds 1..runs)")
	stall = flag.Duration("stall", 1500*time.Millisecond, "TestFull: the stall of the second configuration")
)

// TestFull is the comparison of the README, off by default:
//
//	go test ./gossipbench -run TestFull -v -timeout 60m -args -full -runs 3
func TestFull(t *testing.T) {
	if !*full {
		t.Skip("use -full")
	}
	for seed := int64(1); seed <= int64(*runs); seed++ {
		for _, st := range []time.Duration{0, *stall} {
			for _, impl := range Impls {
				r, err := Run(context.Background(), Options{Impl: impl, Nodes: 64, Loss: 0.05, Stall: st,
					Duration: 60 * time.Second, ProbeInterval: time.Second, Seed: seed})
				if err != nil {
					t.Fatal(err)
				}
				b, _ := json.Marshal(r)
				t.Logf("%s", b)
			}
		}
	}
}
