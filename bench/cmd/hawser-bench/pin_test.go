package main

import (
	"slices"
	"testing"
)

func TestSplitCores(t *testing.T) {
	for _, tc := range []struct {
		cpus           []int
		gmp            int
		client, server []int
	}{
		{[]int{0, 1}, 1, []int{0}, []int{1}},
		{[]int{0, 1}, 2, []int{0}, []int{1}}, // two Ps on one core each
		{[]int{0, 1}, 0, []int{0}, []int{1}},
		{[]int{0, 1, 2, 3}, 2, []int{0, 1}, []int{2, 3}},
		{[]int{0, 1, 2, 3}, 1, []int{0}, []int{1}},
		{[]int{0, 1, 2}, 2, []int{0}, []int{1}},
		{[]int{0, 1, 2, 3, 4, 5}, 4, []int{0, 1, 2}, []int{3, 4, 5}},
		{[]int{2, 5, 7, 9}, 2, []int{2, 5}, []int{7, 9}}, // the runner's own CPU set
		{[]int{3}, 1, []int{3}, []int{3}},
	} {
		c, s := splitCores(tc.cpus, tc.gmp)
		if !slices.Equal(c, tc.client) || !slices.Equal(s, tc.server) {
			t.Errorf("splitCores(%v, %d) = %v, %v; want %v, %v", tc.cpus, tc.gmp, c, s, tc.client, tc.server)
		}
	}
	if got := cpuList([]int{2, 3}); got != "2,3" {
		t.Errorf("cpuList = %q", got)
	}
}
