package drivers_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/hawser-rpc/hawser/internal/leaktest"
)

// TestMain checks that no goroutine outlives the tests: every *sql.DB,
// server and client connection is closed. leaktest lets off gnet's global
// pool and the goroutine of the expirable LRU behind auth.Cached, which
// nothing stops (golang-lru/v2 v2.0.7 has no Close).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leaktest.Options()...) }
