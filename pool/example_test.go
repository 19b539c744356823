package pool_test

import (
	"fmt"
	"time"

	"github.com/hawser-rpc/hawser/pool"
)

// The retry schedule: truncated exponential, capped, with equal jitter
// (here the jitter source returns its maximum, to print the upper bounds).
func ExampleBackoff_Delay() {
	b := pool.Backoff{Base: 200 * time.Millisecond, Max: 180 * time.Second,
		Rand: func(n int64) int64 { return n - 1 }}
	for n := 1; n <= 12; n += 2 {
		fmt.Println(n, b.Delay(n))
	}
	// Output:
	// 1 200ms
	// 3 800ms
	// 5 3.2s
	// 7 12.8s
	// 9 51.2s
	// 11 3m0s
}
