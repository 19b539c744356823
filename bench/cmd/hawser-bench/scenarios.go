package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/hawser-rpc/hawser/bench/internal/impl"
)

// A scenario is a kind of benchmark. To add one, write its run (and print)
// functions and register it here: the CLI's flags, progress bar, JSON and
// plot come with it.
type scenario struct {
	// check validates the options for this scenario.
	check func(o *options) error
	// runs is how many runs the progress bar counts.
	runs func(o *options) int
	// run executes the scenario; it calls progress after each run. Each
	// returned row becomes one JSON line.
	run func(ctx context.Context, o *options, progress func(desc string)) ([]any, error)
	// print writes the terminal table.
	print func(w io.Writer, o *options, rows []any)
	// plot writes a chart, or is nil.
	plot func(path string, rows []any) error
}

var scenarios = map[string]scenario{
	"unary":  {check: checkRPC(false), runs: rpcRuns, run: runRPC, print: printRPC, plot: plotRPC},
	"stream": {check: checkRPC(true), runs: rpcRuns, run: runRPC, print: printRPC, plot: plotRPC},
}

func scenarioNames() []string {
	var out []string
	for n := range scenarios {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func checkRPC(streams bool) func(o *options) error {
	return func(o *options) error {
		for _, name := range o.impls {
			im, err := impl.Get(name)
			if err != nil {
				return err
			}
			if streams && !im.Streams {
				return fmt.Errorf("%s has no server streaming", name)
			}
		}
		if streams && o.rate > 0 {
			return fmt.Errorf("--rate applies to the unary scenario")
		}
		return nil
	}
}

func rpcRuns(o *options) int {
	return len(o.sizes) * len(o.concs) * len(o.gomaxprocs) * o.rounds * len(o.impls)
}

func printRPC(w io.Writer, o *options, rows []any) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	unit := "calls/s"
	if o.scenario == "stream" {
		unit = "items/s"
	}
	fmt.Fprintf(tw, "impl\tsize\tconc\tconns\tgmp\t%s\tvs grpc\tp50 µs\tp90 µs\tp99 µs\tp99.9 µs\tmax µs\terrors\tsrv cpu µs/call\tcli cpu µs/call\tallocs/call\tcs/call srv\tcs/call cli\t\n", unit)
	for _, r := range rows {
		x := r.(*rpcRow)
		vs := "-"
		if x.VsGRPC > 0 {
			vs = fmt.Sprintf("%.2fx", x.VsGRPC)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.0f\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%d\t%.2f\t%.2f\t%.1f\t%.2f\t%.2f\t\n",
			x.Impl, x.Size, x.Conc, x.Conns, x.GOMAXPROCS, x.QPS, vs, x.P50, x.P90, x.P99, x.P999, x.Max, x.Errors,
			x.ServerCPU, x.ClientCPU, x.Allocs, x.SrvCS, x.CliCS)
	}
	_ = tw.Flush()
	mode := "closed loop"
	if o.rate > 0 {
		mode = fmt.Sprintf("open loop at %.0f calls/s", o.rate)
	}
	fmt.Fprintf(w, "\n%s, TLS 1.3, %d round(s) of %v (+%v warm-up), medians; cpu, allocs and cs (context switches,\n"+
		"voluntary + involuntary, every thread: getrusage) per call count the whole process.\n",
		mode, o.rounds, o.duration, o.warmup)
	fmt.Fprintf(w, "gmp: GOMAXPROCS of server and client (0: Go's default); %s.\n", pinning(rows))
}

// pinning says where the processes ran at each GOMAXPROCS setting.
func pinning(rows []any) string {
	var gmps []int
	var where []string // where[i] is for gmps[i]
	for _, r := range rows {
		x := r.(*rpcRow)
		if x.ClientCPUs == "" {
			return "not pinned"
		}
		if !slices.Contains(gmps, x.GOMAXPROCS) {
			gmps = append(gmps, x.GOMAXPROCS)
			where = append(where, fmt.Sprintf("client on cpu %s, server on cpu %s", x.ClientCPUs, x.ServerCPUs))
		}
	}
	if len(slices.Compact(slices.Clone(where))) == 1 {
		return "pinned with taskset, " + where[0] + " at every gmp"
	}
	parts := make([]string, len(gmps))
	for i, g := range gmps {
		parts[i] = fmt.Sprintf("gmp %d: %s", g, where[i])
	}
	return "pinned with taskset, " + strings.Join(parts, "; ")
}
