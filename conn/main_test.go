package conn

import (
	"testing"

	"go.uber.org/goleak"
)

// gnet starts a global ants worker pool at package init; it is not ours.
var leakOpts = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
	goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakOpts...)
}
