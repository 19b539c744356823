// Package leaktest holds the goroutine-leak options every hawser test
// package shares.
package leaktest

import "go.uber.org/goleak"

// Options ignores goroutines that are not hawser's: gnet starts a global
// ants worker pool at package init.
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
	}
}
