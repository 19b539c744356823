package raft

import (
	"context"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// BenchmarkHeartbeatBesideSnapshot measures heartbeat round trips while
// snapshots stream to the same follower: "own-conn" is the transport as it
// is (heartbeats on a shared connection, the snapshot on the dedicated
// one); "snapshot-conn" sends the same heartbeat call on the snapshot's
// connection, behind its bytes, as a transport with one connection per
// peer would. Metrics: p50 and p99 in µs. The README's comparison of one
// connection against two comes from here:
//
//	go test -run '^$' -bench HeartbeatBesideSnapshot -benchtime 400x ./raft/
func BenchmarkHeartbeatBesideSnapshot(b *testing.B) {
	for _, mode := range []string{"own-conn", "snapshot-conn"} {
		b.Run(mode, func(b *testing.B) {
			f, l := newNode(b, nodeOpts{}), newNode(b, nodeOpts{})
			f.tr.SetHeartbeatHandler(func(rpc hraft.RPC) {
				rpc.Respond(&hraft.AppendEntriesResponse{Term: 3, Success: true}, nil)
			})
			stop := make(chan struct{})
			var served sync.WaitGroup
			served.Add(1)
			go func() { // the follower's raft: reads every snapshot to its end
				defer served.Done()
				for {
					select {
					case rpc := <-f.tr.Consumer():
						_, err := io.Copy(io.Discard, rpc.Reader)
						rpc.Respond(&hraft.InstallSnapshotResponse{Term: 3, Success: err == nil}, err)
					case <-stop:
						return
					}
				}
			}()
			ctx, cancel := context.WithCancel(context.Background())
			var streaming sync.WaitGroup
			streaming.Add(1)
			go func() { // the leader: one 16 MiB snapshot after another
				defer streaming.Done()
				for ctx.Err() == nil {
					_ = l.tr.InstallSnapshot("f", f.addr, snapshotArgs(16<<20), new(hraft.InstallSnapshotResponse), io.LimitReader(newNoise(2), 16<<20))
				}
			}()
			// Wait until the stream flows (a session exists on the follower).
			waitFor(b, 10*time.Second, "a snapshot streaming", func() bool {
				f.tr.mu.Lock()
				defer f.tr.mu.Unlock()
				return len(f.tr.sessions) > 0
			})
			hb := appendAppendEntriesRequest(nil, heartbeatArgs())
			bulk, err := l.tr.bulkConnTo(ctx, l.tr.peer("f", f.addr))
			if err != nil {
				b.Fatal(err)
			}
			rtts := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if mode == "own-conn" {
					err = l.tr.AppendEntries("f", f.addr, heartbeatArgs(), new(hraft.AppendEntriesResponse))
				} else {
					cctx, ccancel := context.WithTimeout(ctx, DefaultHeartbeatTimeout)
					_, err = bulk.Call(cctx, mHeartbeat, hb, urgent...)
					ccancel()
				}
				if err != nil {
					b.Fatal(err)
				}
				rtts = append(rtts, time.Since(start))
				time.Sleep(2 * time.Millisecond) // a heartbeat interval, not a wait
			}
			b.StopTimer()
			slices.Sort(rtts)
			b.ReportMetric(float64(rtts[len(rtts)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(rtts[len(rtts)*99/100].Microseconds()), "p99-µs")
			cancel()
			l.stop() // ends the snapshot in flight
			streaming.Wait()
			close(stop)
			served.Wait()
		})
	}
}
