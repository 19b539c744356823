// Command hawser-bench compares hawser with other RPC implementations side
// by side, in one run, on the same machine.
//
//	hawser-bench --scenario unary --impl hawser,grpc,arpc --size 1024 --conc 256 \
//	    --duration 5s --rounds 3 --json out.json --plot out.png
//
// For the RPC scenarios (unary, stream) every run starts a server process
// and a client process (pinned to different cores with taskset when it is
// available; see pin.go) at one --gomaxprocs setting, runs the workload for
// --warmup then measures for --duration, and reads both processes' CPU
// time, allocation counts and context switches around the measured window.
// Implementations and GOMAXPROCS settings are interleaved round by round
// (A1 B1 A2 B2, A1 B1 A2 B2) so that machine drift hits all of them alike,
// and each figure reported is the median over --rounds. Other scenarios run in
// process: gossip (gossip.go) and raft (raft.go); see scenarios.go to add one.
//
//	hawser-bench --scenario raft --impl hawser,net-tls,net-tcp,inmem --size 100,4096 \
//	    --conc 1,16,64 --duration 3s --warmup 1s --rounds 3 --json raft.json
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "serve":
			exit(serveMain(os.Args[2:]))
			return
		case "client":
			exit(clientMain(os.Args[2:]))
			return
		case "run":
			os.Args = append(os.Args[:1], os.Args[2:]...)
		}
	}
	exit(runMain(os.Args[1:]))
}

func exit(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "hawser-bench:", err)
		os.Exit(1)
	}
}
