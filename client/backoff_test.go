package client

import (
	"testing"
	"time"
)

// The default sequence is Corda's: 5 s, ×1.5, capped at 3 minutes; other
// settings follow the same rule, a multiplier below 1 waits the same each
// time, and jitter only shortens a wait, by at most its fraction.
func TestBackoffDelays(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	want := []time.Duration{5 * time.Second, 7500 * time.Millisecond, 11250 * time.Millisecond,
		ms(16875), ms(25312.5), ms(37968.75), ms(56953.125), ms(85429.6875), ms(128144.53125),
		3 * time.Minute, 3 * time.Minute, 3 * time.Minute}
	for i, w := range want {
		if got := (Backoff{}).Delay(i + 1); got != w {
			t.Errorf("default Delay(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := (Backoff{}).Delay(1000); got != 3*time.Minute {
		t.Errorf("Delay(1000) = %v", got)
	}
	b := Backoff{Initial: 10 * time.Millisecond, Multiplier: 2, Max: 50 * time.Millisecond}
	for i, w := range []time.Duration{10, 20, 40, 50, 50} {
		if got := b.Delay(i + 1); got != w*time.Millisecond {
			t.Errorf("%+v: Delay(%d) = %v, want %v", b, i+1, got, w*time.Millisecond)
		}
	}
	flat := Backoff{Initial: time.Second, Multiplier: 0.5}
	if flat.Delay(1) != time.Second || flat.Delay(7) != time.Second {
		t.Errorf("multiplier below 1: %v, %v", flat.Delay(1), flat.Delay(7))
	}
	j := Backoff{Initial: time.Second, Jitter: 0.25}
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for range 1000 {
		d := j.wait(1)
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 750*time.Millisecond || hi > time.Second || hi-lo < 100*time.Millisecond {
		t.Errorf("jitter 0.25 of 1 s drew from [%v, %v]", lo, hi)
	}
	if d := (Backoff{Initial: time.Second}).wait(1); d != time.Second {
		t.Errorf("no jitter: %v", d)
	}
}
