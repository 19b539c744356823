package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// The test binary stands in for hawser-bench when the runner starts its
// server and client processes.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "serve" || os.Args[1] == "client") {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A tiny run of every implementation through the real runner: processes,
// table, JSON lines with the documented fields, and a plot.
func TestRunnerEndToEnd(t *testing.T) {
	dir := t.TempDir()
	out, plot := filepath.Join(dir, "out.json"), filepath.Join(dir, "out.png")
	for _, sc := range [][]string{
		{"--scenario", "unary", "--impl", "hawser,grpc,arpc,netrpc,raw", "--conc", "1,4"},
		{"--scenario", "unary", "--impl", "hawser,grpc", "--conc", "2", "--rate", "500"},
		{"--scenario", "stream", "--impl", "hawser,grpc,raw", "--conc", "2"},
	} {
		args := append(sc, "--size", "64", "--duration", "200ms", "--warmup", "100ms", "--rounds", "1",
			"--json", out, "--plot", plot, "--pin", "off")
		var stdout, stderr bytes.Buffer
		if err := runCLI(args, &stdout, &stderr); err != nil {
			t.Fatalf("%v: %v\n%s", sc, err, stderr.String())
		}
		header, _, _ := strings.Cut(stdout.String(), "\n")
		for _, col := range []string{"impl", "gmp", "calls/s", "p50 µs", "cs/call srv", "cs/call cli"} {
			if !strings.Contains(header, col) && (col != "calls/s" || !strings.Contains(header, "items/s")) {
				t.Fatalf("table header lacks %q: %s", col, header)
			}
		}
		rows := readRows(t, out)
		for _, row := range rows {
			for _, k := range []string{"scenario", "impl", "size", "conc", "conns", "gomaxprocs", "tls", "qps",
				"p50_us", "p99_us", "p999_us", "errors", "server_cpu_us_per_call", "client_cpu_us_per_call",
				"server_cs_per_call", "client_cs_per_call"} {
				if _, ok := row[k]; !ok {
					t.Fatalf("JSON line lacks %q: %v", k, row)
				}
			}
			if row["qps"].(float64) <= 0 {
				t.Fatalf("no calls: %v", row)
			}
			// Every call waits for the network at least once on each side.
			if row["server_cs_per_call"].(float64) <= 0 || row["client_cs_per_call"].(float64) <= 0 {
				t.Fatalf("no context switches counted: %v", row)
			}
		}
		if len(rows) == 0 {
			t.Fatal("no JSON lines")
		}
		if st, err := os.Stat(plot); err != nil || st.Size() == 0 {
			t.Fatalf("plot: %v", err)
		}
	}
}

// A tiny raft run through the real runner: every implementation at one
// point, one round, a small snapshot; the table's columns and the JSON
// fields the scenario documents.
func TestRunnerRaft(t *testing.T) {
	out := filepath.Join(t.TempDir(), "raft.json")
	impls := raftImpls()
	args := []string{"--scenario", "raft", "--impl", strings.Join(impls, ","), "--size", "100", "--conc", "2",
		"--duration", "300ms", "--warmup", "100ms", "--rounds", "1", "--snapshot-size", "1048576", "--json", out}
	var stdout, stderr bytes.Buffer
	if err := runCLI(args, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	header, _, _ := strings.Cut(stdout.String(), "\n")
	for _, col := range []string{"impl", "ops/s", "vs inmem", "p99 µs", "cpu µs/op", "allocs/op", "hb p99 µs", "snapshot ms"} {
		if !strings.Contains(header, col) {
			t.Fatalf("table header lacks %q: %s", col, header)
		}
	}
	rows := readRows(t, out)
	if len(rows) != len(impls) {
		t.Fatalf("%d JSON lines for %d implementations", len(rows), len(impls))
	}
	var heartbeats float64
	for i, row := range rows {
		for _, k := range []string{"scenario", "impl", "size", "conc", "ops_s", "p50_us", "p99_us", "cpu_us_per_op",
			"allocs_per_op", "hb_p50_us", "hb_p99_us", "hb_max_us", "snapshot_ms"} {
			if _, ok := row[k]; !ok {
				t.Fatalf("JSON line lacks %q: %v", k, row)
			}
		}
		if row["scenario"] != "raft" || row["impl"] != impls[i] || row["size"].(float64) != 100 || row["conc"].(float64) != 2 {
			t.Errorf("row %d: %v", i, row)
		}
		for _, k := range []string{"ops_s", "p50_us", "p99_us", "cpu_us_per_op", "allocs_per_op", "snapshot_ms"} {
			if row[k].(float64) <= 0 {
				t.Errorf("%s: %s = %v", impls[i], k, row[k])
			}
		}
		if row["impl"] == "inmem" && row["ops_vs_inmem"] != 1.0 {
			t.Errorf("inmem against itself: %v", row["ops_vs_inmem"])
		}
		heartbeats += row["hb_count"].(float64)
		if row["hb_count"].(float64) > 0 && row["hb_p99_us"].(float64) <= 0 {
			t.Errorf("%s: heartbeats without a p99: %v", impls[i], row)
		}
	}
	// A heartbeat goes to each follower every 100-200ms: a 300ms window
	// holds a few per run.
	if heartbeats == 0 {
		t.Error("no heartbeat timed in any run")
	}
}

// A matrix of two GOMAXPROCS settings through the real runner, pinned when
// the machine allows: a row per implementation and setting, labelled, with
// the cores and the context switches per call of both processes.
func TestRunnerGOMAXPROCSMatrix(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.json")
	args := []string{"--scenario", "unary", "--impl", "hawser,raw", "--size", "64", "--conc", "1", "--gomaxprocs", "1,2",
		"--duration", "200ms", "--warmup", "100ms", "--rounds", "2", "--json", out, "--pin", "auto"}
	var stdout, stderr bytes.Buffer
	if err := runCLI(args, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	// stderr is no terminal: one plain line per run, in the order run.
	var want []string
	for round := 1; round <= 2; round++ {
		for _, gmp := range []int{1, 2} {
			for _, impl := range []string{"hawser", "raw"} {
				want = append(want, fmt.Sprintf("unary %s 64B x1 gmp%d r%d: ", impl, gmp, round))
			}
		}
	}
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if len(lines) != len(want) || strings.Contains(stderr.String(), "\r") {
		t.Fatalf("progress: want %d plain lines, got:\n%q", len(want), stderr.String())
	}
	summary := regexp.MustCompile(`^[0-9.]+[kM]? calls/s p50 [0-9]+µs$`)
	for i, l := range lines {
		rest, ok := strings.CutPrefix(l, want[i])
		if !ok || !summary.MatchString(rest) {
			t.Errorf("progress line %d: %q; want %q followed by a summary", i, l, want[i])
		}
	}
	_, lookErr := exec.LookPath("taskset")
	pinned := lookErr == nil && runtime.NumCPU() >= 2
	type key struct {
		impl string
		gmp  float64
	}
	seen := map[key]bool{}
	for _, row := range readRows(t, out) {
		k := key{row["impl"].(string), row["gomaxprocs"].(float64)}
		if seen[k] {
			t.Fatalf("two rows for %v", k)
		}
		seen[k] = true
		if row["rounds"].(float64) != 2 {
			t.Errorf("%v: %v rounds, want 2", k, row["rounds"])
		}
		if row["server_cs_per_call"].(float64) <= 0 || row["client_cs_per_call"].(float64) <= 0 {
			t.Errorf("%v: no context switches counted: %v", k, row)
		}
		cli, _ := row["client_cpus"].(string)
		srv, _ := row["server_cpus"].(string)
		if pinned && (cli == "" || srv == "" || cli == srv) {
			t.Errorf("%v: pinned to client %q, server %q; want two core sets", k, cli, srv)
		}
		if !pinned && (cli != "" || srv != "") {
			t.Errorf("%v: cores %q, %q without pinning", k, cli, srv)
		}
	}
	for _, impl := range []string{"hawser", "raw"} {
		for _, gmp := range []float64{1, 2} {
			if !seen[key{impl, gmp}] {
				t.Errorf("no row for %s at GOMAXPROCS %v", impl, gmp)
			}
		}
	}
}

// readRows reads a --json file: one object per line.
func readRows(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var rows []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var row map[string]any
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}
