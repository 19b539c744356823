package raft

import (
	"fmt"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// 3- and 5-node clusters: elect, apply 10,000 entries, kill the leader's
// transport; a new leader comes within 2x ElectionTimeout and no
// acknowledged entry is lost.
func TestClusterFailover(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d-nodes", n), func(t *testing.T) {
			noLeaks(t)
			c := newCluster(t, n, clusterOpts{})
			l := c.leader(10 * time.Second)
			acked := applyN(t, l.raft, "a", 10000, 64)
			if len(acked) != 10000 {
				t.Fatalf("%d of 10000 applies acknowledged", len(acked))
			}
			converged(t, 20*time.Second, c.nodes, acked)

			// Kill the leader's transport: it can neither send nor answer.
			killed := time.Now()
			_ = l.tr.Close()
			rest := c.others(l)
			nl := c.leader(10*time.Second, rest...)
			took := time.Since(killed)
			limit := 2 * raftConfig("x").ElectionTimeout
			t.Logf("new leader %s after %v (limit %v)", nl.id, took, limit)
			if took > limit {
				t.Errorf("new leader after %v, more than 2x ElectionTimeout (%v)", took, limit)
			}
			more := applyN(t, nl.raft, "b", 100, 8)
			if len(more) != 100 {
				t.Fatalf("%d of 100 applies acknowledged by the new leader", len(more))
			}
			if err := nl.raft.Barrier(10 * time.Second).Error(); err != nil {
				t.Fatal(err)
			}
			converged(t, 20*time.Second, rest, append(acked, more...))
		})
	}
}

// Leadership transfer moves leadership to the named follower (TimeoutNow).
func TestClusterLeadershipTransfer(t *testing.T) {
	noLeaks(t)
	c := newCluster(t, 3, clusterOpts{})
	l := c.leader(10 * time.Second)
	to := c.others(l)[1]
	if err := l.raft.LeadershipTransferToServer(to.id, to.addr).Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the target leads", func() bool { return to.raft.State() == hraft.Leader })
	if got := applyN(t, to.raft, "t", 100, 4); len(got) != 100 {
		t.Fatalf("%d of 100 applies acknowledged after the transfer", len(got))
	}
}
