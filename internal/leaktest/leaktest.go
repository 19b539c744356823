// Package leaktest holds the goroutine-leak options every hawser test
// package shares.
package leaktest

import "go.uber.org/goleak"

// Options ignores goroutines that are not hawser's: gnet starts a global
// ants worker pool at package init, and golang-lru/v2's expirable LRU (the
// auth.Cached behind options.cache) starts a goroutine per cache that it
// never stops (its v2 API has no Close).
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/golang-lru/v2/expirable.NewLRU[...].func1"),
	}
}
