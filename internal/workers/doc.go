// Package workers is the bounded worker pool that runs pool-mode handlers:
// goroutines start on demand up to a maximum and exit after a period idle;
// tasks wait in a bounded queue; Submit never blocks and says no when both
// are full, so the event loop can answer "resource exhausted" at once
// instead of blocking or growing without bound.
//
// A task goes to a goroutine that is waiting and not already promised to
// another task; failing that, to a new goroutine while fewer than Max run;
// only then to the queue. So a task waits in the queue only behind Max
// busy goroutines, never behind a blocked handler while the pool could
// start another.
//
// Close and Shutdown stop Submit, run every task already accepted and wait
// for the goroutines to exit; Shutdown gives up waiting when its context
// ends, so a server's Shutdown(ctx) can return by ctx's deadline although a
// handler blocks.
//
// The pool neither interrupts nor times out a running task: a handler that
// must stop takes a context of its own.
package workers
