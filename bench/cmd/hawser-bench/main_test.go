package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
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
		if err := runMain(args); err != nil {
			t.Fatalf("%v: %v", sc, err)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		lines := 0
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var row map[string]any
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"scenario", "impl", "size", "conc", "conns", "tls", "qps", "p50_us", "p99_us", "p999_us", "errors", "server_cpu_us_per_call", "client_cpu_us_per_call", "server_cs_per_call", "client_cs_per_call"} {
				if _, ok := row[k]; !ok {
					t.Fatalf("JSON line lacks %q: %s", k, sc.Text())
				}
			}
			if row["qps"].(float64) <= 0 {
				t.Fatalf("no calls: %s", sc.Text())
			}
			// Every call waits for the network at least once on each side.
			if row["server_cs_per_call"].(float64) <= 0 || row["client_cs_per_call"].(float64) <= 0 {
				t.Fatalf("no context switches counted: %s", sc.Text())
			}
			lines++
		}
		_ = f.Close()
		if lines == 0 {
			t.Fatal("no JSON lines")
		}
		if st, err := os.Stat(plot); err != nil || st.Size() == 0 {
			t.Fatalf("plot: %v", err)
		}
	}
}
