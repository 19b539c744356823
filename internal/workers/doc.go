// Package workers is the bounded worker pool that runs pool-mode handlers:
// goroutines start on demand up to a maximum and exit after a period idle;
// tasks wait in a bounded queue; Submit never blocks and says no when both
// are full, so the event loop can answer "resource exhausted" at once
// instead of blocking or growing without bound.
package workers
