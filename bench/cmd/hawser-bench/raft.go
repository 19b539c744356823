package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hawser-rpc/hawser/bench/raftbench"
)

// The raft scenario runs three hashicorp/raft voters in this process over
// each transport of bench/raftbench, a fresh cluster per run, and
// measures applies on the leader under --conc appliers of --size bytes;
// once per implementation per round it also times an InstallSnapshot of
// --snapshot-size bytes. A round runs every implementation once at every
// (size, conc) point, in an order that rotates from point to point and
// round to round; figures are medians over the rounds. --gomaxprocs sets
// the process's GOMAXPROCS around the runs of each setting (0: the one it
// started with).

func init() {
	scenarios["raft"] = scenario{check: checkRaft, runs: raftRuns, run: runRaft, print: printRaft}
}

// raftImpls is the default --impl of the scenario, in table order: those
// of raftbench.Impls, hawser first and the inmem ceiling last.
func raftImpls() []string {
	var out []string
	for _, n := range []string{"hawser", "net-tls", "net-tcp", "inmem"} {
		if slices.Contains(raftbench.Impls(), n) {
			out = append(out, n)
		}
	}
	return out
}

func checkRaft(o *options) error {
	if !o.set["impl"] {
		o.impls = raftImpls()
	}
	if !o.set["size"] {
		o.sizes = []int{100, 4096}
	}
	if !o.set["conc"] {
		o.concs = []int{1, 16, 64}
	}
	for _, name := range o.impls {
		if !slices.Contains(raftbench.Impls(), name) {
			return fmt.Errorf("raft runs %s, not %q", strings.Join(raftbench.Impls(), ", "), name)
		}
	}
	if slices.Contains(o.sizes, 0) || slices.Contains(o.concs, 0) {
		return fmt.Errorf("raft: --size and --conc must be positive")
	}
	if o.duration <= 0 {
		return fmt.Errorf("raft: --duration must be positive")
	}
	if o.snapshotSize < 0 {
		return fmt.Errorf("--snapshot-size must not be negative")
	}
	for _, f := range []string{"rate", "conns", "nodes", "loss", "stall"} {
		if o.set[f] {
			return fmt.Errorf("--%s does not apply to the raft scenario", f)
		}
	}
	if o.set["pin"] && o.pin != "off" {
		return fmt.Errorf("raft runs in one process: --pin does not apply (the cluster and its appliers share the cores)")
	}
	return nil
}

func raftRuns(o *options) int {
	per := len(o.sizes) * len(o.concs) * len(o.impls)
	if o.snapshotSize > 0 {
		per += len(o.impls)
	}
	return o.rounds * len(o.gomaxprocs) * per
}

// raftRow is one implementation at one size, concurrency and GOMAXPROCS:
// each figure is the median over the rounds of that figure of each run.
type raftRow struct {
	Scenario   string  `json:"scenario"`
	Impl       string  `json:"impl"`
	Size       int     `json:"size"`
	Conc       int     `json:"conc"`
	GOMAXPROCS int     `json:"gomaxprocs"` // 0: the process's own
	OpsS       float64 `json:"ops_s"`      // committed applies per second
	// VsInmem is OpsS over inmem's at the same point (0: no inmem run).
	VsInmem float64 `json:"ops_vs_inmem,omitempty"`
	P50     float64 `json:"p50_us"` // commit latency: Apply to the future's return
	P99     float64 `json:"p99_us"`
	Max     float64 `json:"max_us"`
	// CPU time (user + system) and heap allocations of the whole process
	// per committed apply: the three nodes and the appliers.
	CPU    float64 `json:"cpu_us_per_op"`
	Allocs float64 `json:"allocs_per_op"`
	// The leader's heartbeat round trips in the window, while saturated:
	// percentiles, and how many there were per run (the p99 of a few dozen
	// is close to their maximum).
	HBP50   float64 `json:"hb_p50_us"`
	HBP99   float64 `json:"hb_p99_us"`
	HBMax   float64 `json:"hb_max_us"`
	HBCount float64 `json:"hb_count"`
	HBErrs  float64 `json:"hb_errors"`
	// One InstallSnapshot of SnapshotBytes between two bare transports of
	// the implementation, once per round (the same for all its points).
	SnapshotMs    float64   `json:"snapshot_ms"`
	SnapshotBytes int64     `json:"snapshot_bytes"`
	Errors        float64   `json:"errors"` // applies that failed in the window
	Rounds        int       `json:"rounds"`
	RoundOpsS     []float64 `json:"round_ops_s"`
}

func runRaft(ctx context.Context, o *options, progress func(string)) ([]any, error) {
	type point struct{ size, conc int }
	var points []point
	for _, size := range o.sizes {
		for _, conc := range o.concs {
			points = append(points, point{size, conc})
		}
	}
	type key struct {
		gmp  int
		name string
		pt   point
	}
	type skey struct {
		gmp  int
		name string
	}
	runs := map[key][]raftbench.Result{}
	snaps := map[skey][]float64{}
	own := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(own)
	for round := range o.rounds {
		for _, gmp := range o.gomaxprocs {
			if gmp == 0 {
				runtime.GOMAXPROCS(own)
			} else {
				runtime.GOMAXPROCS(gmp)
			}
			if o.snapshotSize > 0 {
				for _, name := range rotate(o.impls, round) {
					d, err := raftbench.Snapshot(ctx, name, o.snapshotSize)
					if err != nil {
						return nil, fmt.Errorf("%s snapshot gomaxprocs %d: %w", name, gmp, err)
					}
					ms := float64(d) / float64(time.Millisecond)
					snaps[skey{gmp, name}] = append(snaps[skey{gmp, name}], ms)
					progress(fmt.Sprintf("%s snapshot %s gmp%d r%d: %.0f ms", name, bytesShort(o.snapshotSize), gmp, round+1, ms))
				}
			}
			for pi, pt := range points {
				for _, name := range rotate(o.impls, round+pi) {
					r, err := raftbench.Run(ctx, raftbench.Options{Impl: name, Size: pt.size, Conc: pt.conc,
						Warmup: o.warmup, Duration: o.duration})
					if err != nil {
						return nil, fmt.Errorf("%s size %d conc %d gomaxprocs %d: %w", name, pt.size, pt.conc, gmp, err)
					}
					k := key{gmp, name, pt}
					runs[k] = append(runs[k], r)
					progress(fmt.Sprintf("%s %dB x%d gmp%d r%d: %s ops/s p50 %.0fµs hb p99 %.0fµs",
						name, pt.size, pt.conc, gmp, round+1, metric(r.OpsPerSec()), r.P50Us, r.HBP99Us))
				}
			}
		}
	}
	var rows []any
	for _, gmp := range o.gomaxprocs {
		for _, pt := range points {
			var inmem float64
			row := make([]*raftRow, 0, len(o.impls))
			for _, name := range o.impls {
				r := medianRaft(runs[key{gmp, name, pt}])
				r.GOMAXPROCS = gmp
				r.SnapshotMs, r.SnapshotBytes = median(snaps[skey{gmp, name}]), o.snapshotSize
				if name == "inmem" {
					inmem = r.OpsS
				}
				row = append(row, r)
			}
			for _, r := range row {
				if inmem > 0 {
					r.VsInmem = r.OpsS / inmem
				}
				rows = append(rows, r)
			}
		}
	}
	return rows, nil
}

// rotate returns s started at its k-th element (modulo its length).
func rotate(s []string, k int) []string {
	k %= len(s)
	return append(slices.Clone(s[k:]), s[:k]...)
}

func medianRaft(rs []raftbench.Result) *raftRow {
	r0 := rs[0]
	row := &raftRow{Scenario: "raft", Impl: r0.Impl, Size: r0.Size, Conc: r0.Conc, Rounds: len(rs)}
	med := func(f func(raftbench.Result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return median(v)
	}
	row.OpsS = med(raftbench.Result.OpsPerSec)
	row.P50 = med(func(r raftbench.Result) float64 { return r.P50Us })
	row.P99 = med(func(r raftbench.Result) float64 { return r.P99Us })
	row.Max = med(func(r raftbench.Result) float64 { return r.MaxUs })
	row.CPU = med(raftbench.Result.CPUUsPerOp)
	row.Allocs = med(raftbench.Result.AllocsPerOp)
	row.HBP50 = med(func(r raftbench.Result) float64 { return r.HBP50Us })
	row.HBP99 = med(func(r raftbench.Result) float64 { return r.HBP99Us })
	row.HBMax = med(func(r raftbench.Result) float64 { return r.HBMaxUs })
	row.HBCount = med(func(r raftbench.Result) float64 { return float64(r.HBCount) })
	row.HBErrs = med(func(r raftbench.Result) float64 { return float64(r.HBErrors) })
	row.Errors = med(func(r raftbench.Result) float64 { return float64(r.Errors) })
	for _, r := range rs {
		row.RoundOpsS = append(row.RoundOpsS, r.OpsPerSec())
	}
	return row
}

// median returns the median of v (0 for none); it sorts v.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// bytesShort writes a size in binary units: 64MiB, 512KiB, 1000B.
func bytesShort(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func printRaft(w io.Writer, o *options, rows []any) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "impl\tsize\tconc\tgmp\tops/s\tvs inmem\tp50 µs\tp99 µs\tcpu µs/op\tallocs/op\thb p50 µs\thb p99 µs\thb max µs\thb n\tsnapshot ms\terrors\t\n")
	for _, r := range rows {
		x := r.(*raftRow)
		vs := "-"
		if x.VsInmem > 0 {
			vs = fmt.Sprintf("%.2fx", x.VsInmem)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%s\t%.0f\t%.0f\t%.1f\t%.1f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.0f\t\n",
			x.Impl, x.Size, x.Conc, x.GOMAXPROCS, x.OpsS, vs, x.P50, x.P99, x.CPU, x.Allocs,
			x.HBP50, x.HBP99, x.HBMax, x.HBCount, x.SnapshotMs, x.Errors)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\n%d raft v1.8.0 voters in one process (DefaultConfig, in-memory stores, a no-op FSM), a fresh cluster per run;\n"+
		"%d round(s) of %v (+%v warm-up), medians. ops/s: committed applies on the leader from conc goroutines, each waiting\n"+
		"for its future (p50/p99: Apply to its return). cpu (user + system) and allocs per op count the whole process.\n"+
		"hb: the leader's heartbeat round trips during the window (hb n per run). snapshot: one InstallSnapshot of %s between\n"+
		"two bare transports per round. net-tls: NetworkTransport over TLS 1.3 (mutual); hawser: TLS 1.3 + cluster key.\n"+
		"gmp: GOMAXPROCS of the process (0: its own, %d); not pinned.\n",
		raftbench.Voters, o.rounds, o.duration, o.warmup, bytesShort(o.snapshotSize), runtime.GOMAXPROCS(0))
}
