package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Written to a file, as in `make bench 2> log`, progress is one plain line
// per run: no bar, no carriage returns.
func TestProgressOffTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if isTerminal(f) {
		t.Fatal("a regular file counts as a terminal")
	}
	p := newProgress(f, 2, "unary")
	p.done("hawser 1024B x1 gmp1 r1: 9.1k calls/s p50 104µs")
	p.done("raw 1024B x1 gmp1 r1: 13.7k calls/s p50 68µs")
	p.finish()
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	want := "unary hawser 1024B x1 gmp1 r1: 9.1k calls/s p50 104µs\n" +
		"unary raw 1024B x1 gmp1 r1: 13.7k calls/s p50 68µs\n"
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if strings.Contains(string(got), "\r") {
		t.Fatal("carriage return in a file")
	}
}

func TestMetric(t *testing.T) {
	for x, want := range map[float64]string{
		912: "912", 9140: "9.1k", 13_700: "14k", 86_442: "86k", 594_570: "595k", 2_765_650: "2.77M",
	} {
		if got := metric(x); got != want {
			t.Errorf("metric(%v) = %q, want %q", x, got, want)
		}
	}
}
