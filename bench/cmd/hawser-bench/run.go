package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hawser-rpc/hawser/bench/internal/impl"
	"github.com/hawser-rpc/hawser/bench/internal/load"
	"github.com/hawser-rpc/hawser/internal/certgen"
)

// options are the command-line flags (their names are part of the CLI).
type options struct {
	scenario   string
	impls      []string
	sizes      []int
	concs      []int
	conns      int
	duration   time.Duration
	warmup     time.Duration
	rounds     int
	rate       float64
	jsonPath   string
	plotPath   string
	pin        string
	gomaxprocs []int
	nodes      int
	loss       float64
	stall      time.Duration
	// snapshotSize is the raft scenario's InstallSnapshot size in bytes
	// (0: not measured).
	snapshotSize int64
	set          map[string]bool // flags given on the command line
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("hawser-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	scenario := fs.String("scenario", "unary", "scenario: "+strings.Join(scenarioNames(), ", "))
	impls := fs.String("impl", "hawser,grpc", "comma list of implementations: "+strings.Join(impl.Names(), ", "))
	sizes := fs.String("size", "1024", "comma list of payload (item) sizes in bytes")
	concs := fs.String("conc", "1", "comma list of concurrent callers (streams)")
	fs.IntVar(&o.conns, "conns", 1, "connections per client (raw: one per caller)")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured window per run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "warm-up per run, not measured")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; implementations interleave within a round; figures are medians")
	fs.Float64Var(&o.rate, "rate", 0, "open loop: total calls/s (0: closed loop)")
	fs.StringVar(&o.jsonPath, "json", "", "write one JSON object per line to this file")
	fs.StringVar(&o.plotPath, "plot", "", "write a latency chart to this file (.png or .svg)")
	fs.StringVar(&o.pin, "pin", "auto", pinHelp)
	gomaxprocs := fs.String("gomaxprocs", "2", "comma list of GOMAXPROCS settings of server and client (0: Go's default);\n"+
		"every run is done at each, rows labelled gmp; pinned, each process has its own cores (--pin)")
	fs.IntVar(&o.nodes, "nodes", 64, "gossip: cluster size")
	fs.Float64Var(&o.loss, "loss", 0, "gossip: packet loss probability")
	fs.DurationVar(&o.stall, "stall", 0, "gossip: stall one healthy node this long")
	fs.Int64Var(&o.snapshotSize, "snapshot-size", 64<<20, "raft: bytes of the InstallSnapshot timed once per implementation per round (0: none)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	o.scenario = *scenario
	o.impls = splitList(*impls)
	var err error
	if o.sizes, err = intList(*sizes); err != nil {
		return nil, fmt.Errorf("--size: %w", err)
	}
	if o.concs, err = intList(*concs); err != nil {
		return nil, fmt.Errorf("--conc: %w", err)
	}
	if o.gomaxprocs, err = intList(*gomaxprocs); err != nil {
		return nil, fmt.Errorf("--gomaxprocs: %w", err)
	}
	if o.rounds < 1 || o.conns < 1 {
		return nil, errors.New("--rounds and --conns must be at least 1")
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func runMain(args []string) error { return runCLI(args, os.Stdout, os.Stderr) }

// runCLI runs the command: the table on stdout, usage and progress on
// stderr (the child processes write their errors to os.Stderr).
func runCLI(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	sc, ok := scenarios[o.scenario]
	if !ok {
		return fmt.Errorf("unknown scenario %q (have %s)", o.scenario, strings.Join(scenarioNames(), ", "))
	}
	if err := sc.check(o); err != nil {
		return err
	}
	p := newProgress(stderr, sc.runs(o), o.scenario)
	rows, err := sc.run(context.Background(), o, p.done)
	p.finish()
	if err != nil {
		return err
	}
	sc.print(stdout, o, rows)
	if o.jsonPath != "" {
		if err := writeJSON(o.jsonPath, rows); err != nil {
			return err
		}
	}
	if o.plotPath != "" && sc.plot != nil {
		if err := sc.plot(o.plotPath, rows); err != nil {
			return err
		}
	}
	return nil
}

func writeJSON(path string, rows []any) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			_ = f.Close()
			return err
		}
	}
	return f.Close()
}

// rpcRow is one implementation at one size, concurrency and GOMAXPROCS:
// medians over the rounds.
type rpcRow struct {
	Scenario string `json:"scenario"`
	Impl     string `json:"impl"`
	Size     int    `json:"size"`
	Conc     int    `json:"conc"`
	Conns    int    `json:"conns"`
	// GOMAXPROCS of both processes (0: Go's default), and the cores they
	// were pinned to (empty: not pinned); see pin.go.
	GOMAXPROCS int       `json:"gomaxprocs"`
	ClientCPUs string    `json:"client_cpus,omitempty"`
	ServerCPUs string    `json:"server_cpus,omitempty"`
	TLS        bool      `json:"tls"`
	Rate       float64   `json:"rate,omitempty"`
	QPS        float64   `json:"qps"`
	P50        float64   `json:"p50_us"`
	P90        float64   `json:"p90_us"`
	P99        float64   `json:"p99_us"`
	P999       float64   `json:"p999_us"`
	Max        float64   `json:"max_us"`
	Errors     int64     `json:"errors"`
	ServerCPU  float64   `json:"server_cpu_us_per_call"`
	ClientCPU  float64   `json:"client_cpu_us_per_call"`
	Allocs     float64   `json:"allocs_per_call"`
	SrvAllocs  float64   `json:"server_allocs_per_call"`
	CliAllocs  float64   `json:"client_allocs_per_call"`
	SrvCS      float64   `json:"server_cs_per_call"` // context switches, all threads (load.Usage)
	CliCS      float64   `json:"client_cs_per_call"`
	VsGRPC     float64   `json:"qps_vs_grpc,omitempty"`
	P99VsGRPC  float64   `json:"p99_vs_grpc,omitempty"`
	Rounds     int       `json:"rounds"`
	RoundQPS   []float64 `json:"round_qps"`
}

// runRPC runs the unary or stream scenario: every (size, conc) point,
// round by round; a round runs every implementation once at each
// GOMAXPROCS setting, so that machine drift hits them all alike. The rows
// of a point come out by GOMAXPROCS, then implementation.
func runRPC(ctx context.Context, o *options, progress func(string)) ([]any, error) {
	env, err := newEnv(o)
	if err != nil {
		return nil, err
	}
	defer env.cleanup()
	type key struct {
		gmp  int
		name string
	}
	var rows []any
	for _, size := range o.sizes {
		for _, conc := range o.concs {
			runs := map[key][]runResult{}
			for round := range o.rounds {
				for _, gmp := range o.gomaxprocs {
					for _, name := range o.impls {
						r, err := env.runOnce(ctx, o, name, size, conc, gmp)
						if err != nil {
							return nil, fmt.Errorf("%s size %d conc %d gomaxprocs %d: %w", name, size, conc, gmp, err)
						}
						runs[key{gmp, name}] = append(runs[key{gmp, name}], r)
						progress(fmt.Sprintf("%s %dB x%d gmp%d r%d: %s", name, size, conc, gmp, round+1, r.summary(o.scenario)))
					}
				}
			}
			for _, gmp := range o.gomaxprocs {
				cli, srv := env.cores(gmp)
				point := make([]*rpcRow, 0, len(o.impls))
				for _, name := range o.impls {
					row := medianRow(o, name, size, conc, runs[key{gmp, name}])
					row.GOMAXPROCS, row.ClientCPUs, row.ServerCPUs = gmp, cli, srv
					point = append(point, row)
				}
				for _, r := range point {
					for _, g := range point {
						if g.Impl == "grpc" && g.QPS > 0 && r.Impl != "grpc" {
							r.VsGRPC = r.QPS / g.QPS
							if g.P99 > 0 {
								r.P99VsGRPC = r.P99 / g.P99
							}
						}
					}
					rows = append(rows, r)
				}
			}
		}
	}
	return rows, nil
}

// runResult is one run: the client's measurement plus the server's usage
// over the same window.
type runResult struct {
	load.Result
	server load.Usage
}

func medianRow(o *options, name string, size, conc int, rs []runResult) *rpcRow {
	conns := o.conns
	if name == "raw" {
		conns = conc
	}
	row := &rpcRow{Scenario: o.scenario, Impl: name, Size: size, Conc: conc, Conns: conns, TLS: true, Rate: o.rate, Rounds: len(rs)}
	med := func(f func(runResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	per := func(r runResult, x float64) float64 {
		if r.Calls == 0 {
			return 0
		}
		return x / float64(r.Calls)
	}
	row.QPS = med(func(r runResult) float64 { return float64(r.Calls) / r.Seconds })
	row.P50 = med(func(r runResult) float64 { return r.P50 })
	row.P90 = med(func(r runResult) float64 { return r.P90 })
	row.P99 = med(func(r runResult) float64 { return r.P99 })
	row.P999 = med(func(r runResult) float64 { return r.P999 })
	row.Max = med(func(r runResult) float64 { return r.Max })
	row.Errors = int64(med(func(r runResult) float64 { return float64(r.Errors) }))
	row.ServerCPU = med(func(r runResult) float64 { return per(r, float64(r.server.CPUNs)/1e3) })
	row.ClientCPU = med(func(r runResult) float64 { return per(r, float64(r.ClientCPUNs)/1e3) })
	row.SrvAllocs = med(func(r runResult) float64 { return per(r, float64(r.server.Mallocs)) })
	row.CliAllocs = med(func(r runResult) float64 { return per(r, float64(r.ClientMallocs)) })
	row.Allocs = med(func(r runResult) float64 { return per(r, float64(r.server.Mallocs+r.ClientMallocs)) })
	row.SrvCS = med(func(r runResult) float64 { return per(r, float64(r.server.CtxSwitches)) })
	row.CliCS = med(func(r runResult) float64 { return per(r, float64(r.ClientCtxSwitches)) })
	for _, r := range rs {
		row.RoundQPS = append(row.RoundQPS, float64(r.Calls)/r.Seconds)
	}
	return row
}

// env is what every run shares: this executable, a certificate, a cluster
// key, and how to pin processes.
type env struct {
	self      string
	dir       string
	cert, key string
	clusterID string
	taskset   string // empty: no pinning
	cpus      []int  // the cores to pin to (pin.go), when taskset is set
}

func newEnv(o *options) (*env, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hawser-bench-")
	if err != nil {
		return nil, err
	}
	pair, err := certgen.SelfSigned("localhost", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	e := &env{self: self, dir: dir, cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(e.cert, pair.CertPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(e.key, pair.KeyPEM, 0o600); err != nil {
		return nil, err
	}
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	e.clusterID = hex.EncodeToString(k)
	path, lookErr := exec.LookPath("taskset")
	cpus, cpuErr := allowedCPUs()
	switch o.pin {
	case "on":
		if lookErr != nil {
			return nil, errors.New("--pin on: taskset not found")
		}
		if cpuErr != nil {
			return nil, fmt.Errorf("--pin on: %w", cpuErr)
		}
		e.taskset = path
	case "auto":
		if lookErr == nil && cpuErr == nil && len(cpus) >= 2 {
			e.taskset = path
		}
	case "off":
	default:
		return nil, fmt.Errorf("--pin %q: want auto, on or off", o.pin)
	}
	if e.taskset != "" {
		e.cpus = cpus
	}
	return e, nil
}

// cores returns the client's and the server's cores at GOMAXPROCS gmp as
// taskset lists, or two empty strings when pinning is off.
func (e *env) cores(gmp int) (client, server string) {
	if e.taskset == "" {
		return "", ""
	}
	c, s := splitCores(e.cpus, gmp)
	return cpuList(c), cpuList(s)
}

func (e *env) cleanup() { _ = os.RemoveAll(e.dir) }

// command builds a child process with GOMAXPROCS gmp (0: Go's default),
// pinned to the cores cpus (a taskset list) unless cpus is empty.
func (e *env) command(cpus string, gmp int, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if cpus != "" {
		cmd = exec.Command(e.taskset, append([]string{"-c", cpus, e.self}, args...)...)
	} else {
		cmd = exec.Command(e.self, args...)
	}
	cmd.Env = os.Environ()
	if gmp > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(gmp))
	}
	cmd.Stderr = os.Stderr
	return cmd
}

// child is a running process speaking the line protocol of child.go.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func (e *env) start(cmd *exec.Cmd) (*child, error) {
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	return c, nil
}

// expect returns the payload of the next line starting with prefix.
func (c *child) expect(prefix string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				return "", fmt.Errorf("child exited before %q", prefix)
			}
			if rest, found := strings.CutPrefix(l, prefix); found {
				return strings.TrimSpace(rest), nil
			}
		case <-deadline:
			return "", fmt.Errorf("no %q within %v", prefix, timeout)
		}
	}
}

func (c *child) stop() {
	_ = c.in.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// stats asks a server process for its usage so far (child.go serveMain).
func (c *child) stats() (load.Usage, error) {
	var u load.Usage
	if _, err := io.WriteString(c.in, "stats\n"); err != nil {
		return u, err
	}
	s, err := c.expect("STATS ", 10*time.Second)
	if err != nil {
		return u, err
	}
	_, err = fmt.Sscan(s, &u.CPUNs, &u.Mallocs, &u.CtxSwitches)
	return u, err
}

// runOnce runs one implementation once: a fresh server and client process
// at GOMAXPROCS gmp.
func (e *env) runOnce(_ context.Context, o *options, name string, size, conc, gmp int) (runResult, error) {
	cliCPUs, srvCPUs := e.cores(gmp)
	srv, err := e.start(e.command(srvCPUs, gmp, "serve", "--impl", name, "--cert", e.cert, "--key", e.key, "--cluster-key", e.clusterID))
	if err != nil {
		return runResult{}, err
	}
	defer srv.stop()
	addr, err := srv.expect("ADDR ", 20*time.Second)
	if err != nil {
		return runResult{}, err
	}
	cli, err := e.start(e.command(cliCPUs, gmp, "client", "--impl", name, "--addr", addr, "--cluster-key", e.clusterID,
		"--scenario", o.scenario, "--size", strconv.Itoa(size), "--conc", strconv.Itoa(conc),
		"--conns", strconv.Itoa(o.conns), "--rate", strconv.FormatFloat(o.rate, 'f', -1, 64),
		"--warmup", o.warmup.String(), "--duration", o.duration.String()))
	if err != nil {
		return runResult{}, err
	}
	defer cli.stop()
	if _, err := cli.expect("READY", o.warmup+30*time.Second); err != nil {
		return runResult{}, err
	}
	u0, err := srv.stats()
	if err != nil {
		return runResult{}, err
	}
	if _, err := io.WriteString(cli.in, "GO\n"); err != nil {
		return runResult{}, err
	}
	if _, err := cli.expect("MEASURED", o.duration+60*time.Second); err != nil {
		return runResult{}, err
	}
	u1, err := srv.stats()
	if err != nil {
		return runResult{}, err
	}
	body, err := cli.expect("RESULT ", 60*time.Second)
	if err != nil {
		return runResult{}, err
	}
	var r runResult
	if err := json.Unmarshal([]byte(body), &r.Result); err != nil {
		return runResult{}, err
	}
	r.server = load.Usage{CPUNs: u1.CPUNs - u0.CPUNs, Mallocs: u1.Mallocs - u0.Mallocs, CtxSwitches: u1.CtxSwitches - u0.CtxSwitches}
	return r, nil
}
