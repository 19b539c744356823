package main

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Pinning. Server and client never share a core, so neither can take CPU
// from the other and a run measures each side's own cost. At a GOMAXPROCS
// setting of n, each process is pinned to n cores of its own when the
// runner's CPU set has 2n of them; with fewer, each keeps an equal share
// (at least one), and GOMAXPROCS exceeds the process's cores, as it does in
// a container whose CPU quota is below its GOMAXPROCS. On a 2-core machine
// the client has cpu 0 and the server cpu 1 at every setting: GOMAXPROCS 1
// is one P on one core, GOMAXPROCS 2 two Ps sharing one core (more
// threads, and more context switches, than Ps can run at once). The cores
// of every row are in the JSON (client_cpus, server_cpus) and under the
// table.
const pinHelp = "pin server and client with taskset, each to cores of its own: auto (when there are\n" +
	"2 cores or more), on, off. At GOMAXPROCS n each process gets n cores, disjoint; with fewer than\n" +
	"2n, an equal share: on 2 cores the client has cpu 0 and the server cpu 1 at every setting,\n" +
	"so GOMAXPROCS 2 is two Ps on one core"

// allowedCPUs lists the cores this process may run on, in order.
func allowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, err
	}
	var cpus []int
	for i := 0; len(cpus) < set.Count(); i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus, nil
}

// splitCores assigns the client and the server their cores at GOMAXPROCS
// gmp (0, Go's default, counts as 1) out of cpus, as the rule above says:
// the client takes the first ones, the server the next.
func splitCores(cpus []int, gmp int) (client, server []int) {
	n := max(gmp, 1)
	if 2*n > len(cpus) {
		n = max(len(cpus)/2, 1)
	}
	if len(cpus) < 2 {
		return cpus, cpus
	}
	return cpus[:n], cpus[n : 2*n]
}

// cpuList formats cores for taskset -c and the JSON: "0", "2,3".
func cpuList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}
