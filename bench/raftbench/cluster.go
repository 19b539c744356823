package raftbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Voters is the cluster size of every run.
const Voters = 3

// raftConfig is every node's configuration, the same for every transport:
// raft's defaults (heartbeat and election timeouts of 1s, so a heartbeat
// every 100-200ms, leader lease 500ms, MaxAppendEntries 64, snapshot
// threshold 8192 checked every 120-240s, which a run never reaches) with
// the node's ID and no logging.
func raftConfig(id hraft.ServerID) *hraft.Config {
	c := hraft.DefaultConfig()
	c.LocalID = id
	c.Logger = quietLog
	return c
}

// nopFSM applies nothing and snapshots nothing.
type nopFSM struct{}

func (nopFSM) Apply(*hraft.Log) any                    { return nil }
func (nopFSM) Snapshot() (hraft.FSMSnapshot, error)    { return nopSnapshot{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error          { return rc.Close() }
func (nopSnapshot) Persist(s hraft.SnapshotSink) error { return s.Close() }
func (nopSnapshot) Release()                           {}

type nopSnapshot struct{}

// cluster is Voters raft nodes over one implementation's transports, each
// wrapped to time heartbeats into hb.
type cluster struct {
	eps   []*endpoint
	wraps []hraft.Transport // eps[i].tr wrapped (measured)
	nodes []*hraft.Raft
	ids   map[hraft.ServerID]int // node index by ID
	hb    *heartbeats

	obsCh chan hraft.Observation // leader observations from every node
	obs   []*hraft.Observer      // obs[i] is registered on nodes[i]
}

// newCluster builds and bootstraps a cluster of impl. On an error it tears
// down what it built.
func newCluster(impl string) (_ *cluster, err error) {
	eps, err := newEndpoints(impl, Voters)
	if err != nil {
		return nil, err
	}
	c := &cluster{eps: eps, ids: map[hraft.ServerID]int{}, hb: newHeartbeats(),
		obsCh: make(chan hraft.Observation, 64)}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.close())
		}
	}()
	var servers []hraft.Server
	for i, e := range eps {
		id := hraft.ServerID(fmt.Sprintf("n%d", i))
		c.ids[id] = i
		c.wraps = append(c.wraps, wrap(e.tr, c.hb))
		servers = append(servers, hraft.Server{Suffrage: hraft.Voter, ID: id, Address: e.tr.LocalAddr()})
	}
	leaders := func(o *hraft.Observation) bool {
		_, ok := o.Data.(hraft.LeaderObservation)
		return ok
	}
	for i, tr := range c.wraps {
		id := servers[i].ID
		store := hraft.NewInmemStore()
		r, err := hraft.NewRaft(raftConfig(id), nopFSM{}, store, store, hraft.NewDiscardSnapshotStore(), tr)
		if err != nil {
			return nil, fmt.Errorf("raftbench: node %s: %w", id, err)
		}
		c.nodes = append(c.nodes, r)
		o := hraft.NewObserver(c.obsCh, false, leaders)
		r.RegisterObserver(o)
		c.obs = append(c.obs, o)
	}
	// Every node bootstraps with the same configuration, as raft allows.
	for i, r := range c.nodes {
		if err := r.BootstrapCluster(hraft.Configuration{Servers: servers}).Error(); err != nil {
			return nil, fmt.Errorf("raftbench: bootstrap n%d: %w", i, err)
		}
	}
	return c, nil
}

// leader waits for a node to win an election and commit a barrier, and
// returns it. Leadership is announced by raft's observations; the barrier
// proves that the leader commits (with a majority) before the load starts.
func (c *cluster) leader(ctx context.Context, timeout time.Duration) (*hraft.Raft, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		for _, r := range c.nodes {
			if r.State() != hraft.Leader {
				continue
			}
			err := r.Barrier(timeout).Error()
			if err == nil {
				return r, nil
			}
			if !errors.Is(err, hraft.ErrNotLeader) && !errors.Is(err, hraft.ErrLeadershipLost) {
				return nil, fmt.Errorf("raftbench: barrier: %w", err)
			}
		}
		select {
		case <-c.obsCh: // a node saw a leader (or lost one): look again
		case <-ctx.Done():
			return nil, fmt.Errorf("raftbench: no leader within %v", timeout)
		}
	}
}

// close shuts every node down (raft closes its transport: WithClose), then
// closes the transports and what they own.
func (c *cluster) close() error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, r := range c.nodes {
		wg.Go(func() {
			r.DeregisterObserver(c.obs[i])
			errs[i] = r.Shutdown().Error()
		})
	}
	wg.Wait()
	for i, w := range c.wraps {
		errs = append(errs, w.(hraft.WithClose).Close())
		// The wrapper closed the transport; release the rest.
		if rel := c.eps[i].release; rel != nil {
			errs = append(errs, rel())
		}
	}
	return errors.Join(errs...)
}
