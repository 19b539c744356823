package gossipbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"
)

// Options describe one run.
type Options struct {
	// Impl is "hawser" or "memberlist".
	Impl string
	// Nodes is the cluster size, at least 4 (default 64). One more node
	// joins during the run.
	Nodes int
	// Loss is the probability that an outgoing datagram is dropped, the
	// same for both implementations (default 0).
	Loss float64
	// Stall is how long one healthy node (not the seed, not the victim) is
	// stalled, starting when the victim is killed (0: none).
	Stall time.Duration
	// Duration is how long the whole run takes, start-up, kill and join
	// included (default 60s).
	Duration time.Duration
	// ProbeInterval is the common probe interval; every other timer of
	// both implementations scales with it (default 1s, the LAN default).
	ProbeInterval time.Duration
	// Seed seeds the loss of every node.
	Seed int64
}

// Result is one run's numbers. Times are in milliseconds.
type Result struct {
	Scenario string  `json:"scenario"` // "gossip"
	Impl     string  `json:"impl"`
	Nodes    int     `json:"nodes"`
	Loss     float64 `json:"loss"`
	StallMs  float64 `json:"stall_ms"`
	// DetectP50Ms, DetectP99Ms and DetectMaxMs are percentiles over the
	// surviving nodes (nearest rank) of the time from the kill to when the
	// node saw the victim dead. A node that never did counts as the time
	// to the end of the run, and in Undetected.
	DetectP50Ms float64 `json:"detect_p50_ms"`
	DetectP99Ms float64 `json:"detect_p99_ms"`
	DetectMaxMs float64 `json:"detect_max_ms"`
	Undetected  int     `json:"undetected"`
	// JoinMs is the time from the start of a new node's join to when the
	// last live node saw it; a node that never did counts as the time to
	// the end of the run, and in JoinMissing.
	JoinMs      float64 `json:"join_ms"`
	JoinMissing int     `json:"join_missing"`
	// FalsePositives is the number of healthy nodes that any node ever
	// declared dead; FalsePositiveEvents counts the declarations (a node
	// declared dead by 10 others counts 10).
	FalsePositives      int `json:"false_positives"`
	FalsePositiveEvents int `json:"false_positive_events"`
	// BytesPerNodeS is everything a node sent per second, averaged over
	// the nodes from convergence to the end of the run: UDP payload bytes
	// (the datagrams as handed to the socket, encrypted) plus stream
	// bytes. Stream bytes are, for memberlist, the bytes written on its TCP
	// connections (push-pull, fallback pings); for hawser, the sealed
	// exchange payloads plus a 16-byte frame header each, not counting
	// TLS record overhead, handshakes or keepalive pings of the pooled
	// connections.
	BytesPerNodeS       float64 `json:"bytes_per_node_s"`
	UDPBytesPerNodeS    float64 `json:"udp_bytes_per_node_s"`
	StreamBytesPerNodeS float64 `json:"stream_bytes_per_node_s"`
	PacketsPerNodeS     float64 `json:"packets_per_node_s"`
	// WireBytesPerNodeS is what a node put on the network per second, over
	// the same window: the UDP payload bytes (as above) plus every byte of
	// its TCP connections, counted by a relay in front of each node's
	// listener (wire.go): TLS handshakes and records, hawser's prefaces,
	// HELLOs, PINGs and GOAWAYs included; not TCP/IP headers. For
	// memberlist, whose streams are bare TCP, its TCP wire bytes equal its
	// stream bytes. WireTCPBytesPerNodeS is the TCP part.
	// TCPConnsPerNodeMin is the TCP connections opened per node per
	// minute.
	WireBytesPerNodeS    float64 `json:"wire_bytes_per_node_s"`
	WireTCPBytesPerNodeS float64 `json:"wire_tcp_bytes_per_node_s"`
	TCPConnsPerNodeMin   float64 `json:"tcp_conns_per_node_min"`
	// ConvergeMs is how long the initial cluster took to converge
	// (Converged), or the time waited for it (a third of the run) if some
	// node still missed a member then.
	ConvergeMs      float64 `json:"converge_ms"`
	Converged       bool    `json:"converged"`
	ProbeIntervalMs float64 `json:"probe_interval_ms"`
	DurationS       float64 `json:"duration_s"`
}

// Impls are the implementations Run knows.
var Impls = []string{"hawser", "memberlist"}

// node is one member of either implementation.
type node interface {
	name() string
	addr() string // where others join it
	alive() int   // members it sees alive, itself included
	kill()        // stop without leaving
	faults() *faults
}

type driver interface {
	start(i int, seed string) (node, error)
	close()
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// benchKey is the cluster key of a run (both implementations encrypt).
func benchKey() []byte { return []byte("gossipbench-cluster-key-32-bytes") }

func (o Options) withDefaults() (Options, error) {
	if o.Nodes == 0 {
		o.Nodes = 64
	}
	if o.Duration == 0 {
		o.Duration = 60 * time.Second
	}
	if o.ProbeInterval == 0 {
		o.ProbeInterval = time.Second
	}
	switch {
	case o.Nodes < 4:
		return o, errors.New("gossipbench: at least 4 nodes")
	case o.Loss < 0 || o.Loss >= 1:
		return o, errors.New("gossipbench: loss must be in [0, 1)")
	case o.ProbeInterval < 10*time.Millisecond:
		return o, errors.New("gossipbench: probe interval under 10ms")
	case o.Stall < 0:
		return o, errors.New("gossipbench: negative stall")
	}
	return o, nil
}

// Run runs the scenario: start Nodes nodes (each joins the first), wait for
// one view, then kill one node (no leave) and, at the same moment, stall
// another for Stall; a third of the remaining time later a new node joins.
// At Duration the run ends and the numbers are computed.
func Run(ctx context.Context, o Options) (Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Result{}, err
	}
	rec := &recorder{dead: map[string]map[string]time.Time{}, alive: map[string]map[string]time.Time{}}
	var drv driver
	switch o.Impl {
	case "hawser":
		d, err := newHawserDriver(o, rec)
		if err != nil {
			return Result{}, err
		}
		drv = d
	case "memberlist":
		drv = newMemberlistDriver(o, rec)
	default:
		return Result{}, fmt.Errorf("gossipbench: unknown implementation %q (want one of %v)", o.Impl, Impls)
	}
	defer drv.close()

	start := time.Now()
	end := start.Add(o.Duration)
	var live []node // not killed
	defer func() {
		for _, n := range live {
			n.kill()
		}
	}()
	var all []node
	for i := 0; i < o.Nodes; i++ {
		seed := ""
		if i > 0 {
			seed = all[0].addr()
		}
		n, err := drv.start(i, seed)
		if err != nil {
			return Result{}, fmt.Errorf("gossipbench: starting node %d: %w", i, err)
		}
		all = append(all, n)
		live = append(live, n)
	}
	converged := func() bool {
		for _, n := range live {
			if n.alive() != o.Nodes {
				return false
			}
		}
		return true
	}
	// Wait for one view, at most a third of the run; a node still missing
	// a member then (both implementations can leave a straggler after
	// mass joins, until anti-entropy) is reported in Converged, and the
	// run goes on.
	convergeErr := waitUntil(ctx, start.Add(o.Duration/3), converged)
	if ctx.Err() != nil {
		return Result{}, ctx.Err()
	}
	tConverged := time.Now()
	var base counts
	for _, n := range all {
		base.add(n.faults())
	}
	if err := sleepUntil(ctx, time.Now().Add(2*o.ProbeInterval)); err != nil {
		return Result{}, err
	}

	victim, stalled := all[o.Nodes-1], all[1]
	tKill := time.Now()
	victim.kill()
	live = slices.DeleteFunc(live, func(n node) bool { return n == victim })
	if o.Stall > 0 {
		stalled.faults().stall(o.Stall)
	}
	if err := sleepUntil(ctx, tKill.Add(end.Sub(tKill)/3)); err != nil {
		return Result{}, err
	}
	tJoin := time.Now()
	joiner, err := drv.start(o.Nodes, all[0].addr())
	if err != nil {
		return Result{}, fmt.Errorf("gossipbench: starting the joining node: %w", err)
	}
	all = append(all, joiner)
	live = append(live, joiner)
	if err := sleepUntil(ctx, end); err != nil {
		return Result{}, err
	}
	tEnd := time.Now()
	var total counts
	for _, n := range all {
		total.add(n.faults())
	}

	r := Result{
		Scenario: "gossip", Impl: o.Impl, Nodes: o.Nodes, Loss: o.Loss,
		StallMs:         ms(o.Stall),
		ConvergeMs:      ms(tConverged.Sub(start)),
		Converged:       convergeErr == nil,
		ProbeIntervalMs: ms(o.ProbeInterval),
		DurationS:       tEnd.Sub(start).Seconds(),
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	// Detection, over the nodes alive before the kill that survived it.
	var detect []float64
	for _, n := range all[:o.Nodes-1] {
		if at, ok := rec.dead[victim.name()][n.name()]; ok && !at.Before(tKill) {
			detect = append(detect, ms(at.Sub(tKill)))
		} else {
			detect = append(detect, ms(tEnd.Sub(tKill)))
			r.Undetected++
		}
	}
	r.DetectP50Ms, r.DetectP99Ms, r.DetectMaxMs = percentile(detect, 0.50), percentile(detect, 0.99), percentile(detect, 1)
	// The join, seen by every node but the victim and the joiner.
	for _, n := range all[:o.Nodes-1] {
		if at, ok := rec.alive[joiner.name()][n.name()]; ok {
			r.JoinMs = max(r.JoinMs, ms(at.Sub(tJoin)))
		} else {
			r.JoinMs = max(r.JoinMs, ms(tEnd.Sub(tJoin)))
			r.JoinMissing++
		}
	}
	for subject, observers := range rec.dead {
		if subject == victim.name() {
			continue
		}
		r.FalsePositives++
		r.FalsePositiveEvents += len(observers)
	}
	for _, f := range rec.falseAgain {
		if f != victim.name() {
			r.FalsePositiveEvents++
		}
	}
	window := tEnd.Sub(tConverged).Seconds() * float64(o.Nodes)
	r.UDPBytesPerNodeS = float64(total.udpBytes-base.udpBytes) / window
	r.StreamBytesPerNodeS = float64(total.streamBytes-base.streamBytes) / window
	r.PacketsPerNodeS = float64(total.udpPackets-base.udpPackets) / window
	r.BytesPerNodeS = r.UDPBytesPerNodeS + r.StreamBytesPerNodeS
	r.WireTCPBytesPerNodeS = float64(total.wireTCP-base.wireTCP) / window
	r.WireBytesPerNodeS = r.UDPBytesPerNodeS + r.WireTCPBytesPerNodeS
	r.TCPConnsPerNodeMin = 60 * float64(total.tcpConns-base.tcpConns) / window
	return r, nil
}

// recorder collects the membership events of every node.
type recorder struct {
	mu sync.Mutex
	// dead and alive map subject → observer → the first time the observer
	// saw the subject dead (or left) / alive (joined or refuted).
	dead, alive map[string]map[string]time.Time
	// falseAgain lists the subjects of repeated dead declarations by the
	// same observer (a node declared dead, back, and dead again).
	falseAgain []string
}

func (r *recorder) sawDead(observer, subject string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.dead[subject]
	if m == nil {
		m = map[string]time.Time{}
		r.dead[subject] = m
	}
	if _, ok := m[observer]; ok {
		r.falseAgain = append(r.falseAgain, subject)
		return
	}
	m[observer] = at
}

func (r *recorder) sawAlive(observer, subject string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.alive[subject]
	if m == nil {
		m = map[string]time.Time{}
		r.alive[subject] = m
	}
	if _, ok := m[observer]; !ok {
		m[observer] = at
	}
}

type counts struct{ udpBytes, udpPackets, streamBytes, wireTCP, tcpConns int64 }

func (c *counts) add(f *faults) {
	c.udpBytes += f.udpBytes.Load()
	c.udpPackets += f.udpPackets.Load()
	c.streamBytes += f.streamBytes.Load()
	c.wireTCP += f.wireTCP.Load()
	c.tcpConns += f.tcpConns.Load()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile is the nearest-rank percentile (p in (0, 1]).
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func waitUntil(ctx context.Context, deadline time.Time, cond func() bool) error {
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		if err := sleepUntil(ctx, time.Now().Add(20*time.Millisecond)); err != nil {
			return err
		}
	}
	return nil
}
