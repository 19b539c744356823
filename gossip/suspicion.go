package gossip

import (
	"math"
	"time"
)

// suspicion is the timer of one suspected member (Lifeguard, "LHA-
// Suspicion"): it starts at max and shrinks toward min as independent
// confirmations arrive, reaching min after k of them:
//
//	timeout(n) = max(min, max - (max-min) * log(n+1)/log(k+1))
//
// so a member suspected by one node only (which may be the unhealthy one)
// has long to refute, while one that many nodes find silent is declared
// dead quickly. Without Lifeguard, or with k = 0, the timeout is min.
// Guarded by Gossip.mu.
type suspicion struct {
	start    time.Time
	min, max time.Duration
	k, n     int
	from     map[string]struct{} // who suspected; at most k+1 entries
	timer    Timer
	fire     func()
	clock    Clock
}

func newSuspicion(clock Clock, from string, k int, min, max time.Duration, fire func()) *suspicion {
	s := &suspicion{start: clock.Now(), min: min, max: max, k: k, from: map[string]struct{}{from: {}}, fire: fire, clock: clock}
	timeout := max
	if k < 1 {
		timeout = min
	}
	s.timer = clock.AfterFunc(timeout, fire)
	return s
}

// confirm counts an independent suspicion from a node that did not suspect
// before; it reports whether it was new (then the timer is shortened).
func (s *suspicion) confirm(from string) bool {
	if s.n >= s.k {
		return false
	}
	if _, dup := s.from[from]; dup {
		return false
	}
	s.from[from] = struct{}{}
	s.n++
	remaining := suspicionTimeout(s.n, s.k, s.min, s.max) - s.clock.Now().Sub(s.start)
	s.timer.Stop()
	s.timer = s.clock.AfterFunc(max(remaining, 0), s.fire)
	return true
}

func (s *suspicion) stop() { s.timer.Stop() }

// suspicionTimeout is the formula above, rounded down to a millisecond.
func suspicionTimeout(n, k int, min, max time.Duration) time.Duration {
	if k < 1 {
		return min
	}
	frac := math.Log(float64(n)+1) / math.Log(float64(k)+1)
	raw := max.Seconds() - frac*(max.Seconds()-min.Seconds())
	t := time.Duration(math.Floor(1000*raw)) * time.Millisecond
	if t < min {
		t = min
	}
	return t
}

// suspicionMin is the minimum suspicion timeout for a cluster of n live
// members: mult * max(1, log10(n)) * interval.
func suspicionMin(mult, n int, interval time.Duration) time.Duration {
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	return time.Duration(float64(mult) * scale * float64(interval))
}
