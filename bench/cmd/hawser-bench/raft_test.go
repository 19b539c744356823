package main

import (
	"io"
	"slices"
	"testing"
)

func TestRotate(t *testing.T) {
	s := []string{"a", "b", "c"}
	for k, want := range [][]string{{"a", "b", "c"}, {"b", "c", "a"}, {"c", "a", "b"}, {"a", "b", "c"}} {
		if got := rotate(s, k); !slices.Equal(got, want) {
			t.Errorf("rotate(%v, %d) = %v, want %v", s, k, got, want)
		}
	}
	if !slices.Equal(s, []string{"a", "b", "c"}) {
		t.Errorf("rotate changed its input: %v", s)
	}
}

// The raft scenario's defaults, and the flags it refuses.
func TestCheckRaft(t *testing.T) {
	o, err := parseFlags([]string{"--scenario", "raft"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkRaft(o); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.impls, raftImpls()) || !slices.Equal(o.sizes, []int{100, 4096}) ||
		!slices.Equal(o.concs, []int{1, 16, 64}) || o.snapshotSize != 64<<20 {
		t.Errorf("defaults: impls %v sizes %v concs %v snapshot %d", o.impls, o.sizes, o.concs, o.snapshotSize)
	}
	for _, args := range [][]string{
		{"--impl", "grpc"},
		{"--rate", "100"},
		{"--conns", "2"},
		{"--pin", "on"},
		{"--conc", "0"},
		{"--snapshot-size", "-1"},
	} {
		o, err := parseFlags(append([]string{"--scenario", "raft"}, args...), io.Discard)
		if err != nil {
			continue // refused already
		}
		if err := checkRaft(o); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}
