package pool

import (
	"math/rand/v2"
	"time"
)

// Backoff computes the delay before retry attempt n+1 after n failures
// (n >= 1): the truncated exponential Base*2^(n-1), capped at Max, with
// "equal jitter": a uniform draw from [d/2, d]. Delays so grow (each
// draw's lower bound is the previous draw's upper bound) until they reach
// the cap, carry jitter so that peers do not retry in lockstep, and never
// exceed Max.
type Backoff struct {
	Base time.Duration
	Max  time.Duration
	// Rand returns a uniform int64 in [0, n); nil uses math/rand/v2.
	Rand func(n int64) int64
}

// Delay returns the delay after n failed attempts.
func (b Backoff) Delay(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	half := d / 2
	if half <= 0 {
		return d
	}
	r := rand.Int64N
	if b.Rand != nil {
		r = b.Rand
	}
	return half + time.Duration(r(int64(d-half)+1))
}
