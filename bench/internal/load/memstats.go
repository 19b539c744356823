package load

import "runtime"

type runtimeMemStats = runtime.MemStats

// readMemStats stops the world briefly; it runs only at the window's edges.
func readMemStats(m *runtime.MemStats) { runtime.ReadMemStats(m) }

// Usage is usage, for the server process's "stats" command.
func Usage() (cpuNs int64, mallocs uint64) { return usage() }
