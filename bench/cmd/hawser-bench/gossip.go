package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/hawser-rpc/hawser/bench/gossipbench"
)

// The gossip scenario runs N nodes on loopback UDP in this process, for
// hawser's gossip and for hashicorp/memberlist, under the same loss and
// stall (bench/gossipbench). Each run kills one node, stalls another, and
// joins a new one; a round runs every implementation once.

func init() {
	scenarios["gossip"] = scenario{
		check: checkGossip,
		runs:  func(o *options) int { return o.rounds * len(o.impls) },
		run:   runGossip,
		print: printGossip,
	}
}

func checkGossip(o *options) error {
	if !o.set["impl"] {
		o.impls = []string{"hawser", "memberlist"}
	}
	if !o.set["rounds"] {
		o.rounds = 1 // a gossip run is long (--duration, 60s by default)
	}
	if !o.set["duration"] {
		o.duration = 0 // gossipbench's default
	}
	for _, name := range o.impls {
		if name != "hawser" && name != "memberlist" {
			return fmt.Errorf("gossip compares hawser and memberlist, not %q", name)
		}
	}
	if o.nodes < 4 {
		return fmt.Errorf("--nodes must be at least 4")
	}
	return nil
}

func runGossip(ctx context.Context, o *options, progress func(string)) ([]any, error) {
	results := map[string][]gossipbench.Result{}
	for round := range o.rounds {
		for _, name := range o.impls {
			progress(fmt.Sprintf("%s %d nodes r%d", name, o.nodes, round+1))
			r, err := gossipbench.Run(ctx, gossipbench.Options{
				Impl: name, Nodes: o.nodes, Loss: o.loss, Stall: o.stall,
				Duration: o.duration, Seed: int64(round + 1),
			})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			results[name] = append(results[name], r)
		}
	}
	var rows []any
	for _, name := range o.impls {
		rows = append(rows, medianGossip(results[name]))
	}
	return rows, nil
}

// medianGossip keeps the run whose detection p99 is the median, so that
// every field of the row comes from one consistent run.
func medianGossip(rs []gossipbench.Result) *gossipbench.Result {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b gossipbench.Result) int {
		switch {
		case a.DetectP99Ms < b.DetectP99Ms:
			return -1
		case a.DetectP99Ms > b.DetectP99Ms:
			return 1
		}
		return 0
	})
	r := sorted[len(sorted)/2]
	return &r
}

func printGossip(w io.Writer, o *options, rows []any) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "impl\tnodes\tloss\tstall ms\tdetect p50 ms\tdetect p99 ms\tundetected\tjoin ms\tfalse positives\tcounted B/node/s\twire B/node/s\t(UDP + TCP)\ttcp conns/node/min\tpackets/node/s\t\n")
	for _, r := range rows {
		x := r.(*gossipbench.Result)
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%.0f\t%.0f\t%d\t%.0f\t%d\t%.0f\t%.0f\t(%.0f + %.0f)\t%.2f\t%.1f\t\n",
			x.Impl, x.Nodes, x.Loss, x.StallMs, x.DetectP50Ms, x.DetectP99Ms, x.Undetected, x.JoinMs,
			x.FalsePositives, x.BytesPerNodeS, x.WireBytesPerNodeS, x.UDPBytesPerNodeS, x.WireTCPBytesPerNodeS,
			x.TCPConnsPerNodeMin, x.PacketsPerNodeS)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\n%d node(s) on loopback UDP in one process; one node killed, one stalled (--stall), one joined; %d round(s).\n",
		o.nodes, o.rounds)
	fmt.Fprintf(w, "counted: the protocol's own bytes (datagrams, push-pull and probe payloads). wire: every UDP payload\n"+
		"and TCP byte, TLS handshakes, records and keepalives included (not TCP/IP headers).\n")
}
