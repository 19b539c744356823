package drivers_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no goroutine outlives the tests: every *sql.DB is
// closed. The expirable LRU behind auth.Cached starts a goroutine that
// nothing stops (golang-lru/v2 v2.0.7 has no Close), so it is let off.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hashicorp/golang-lru/v2/expirable.NewLRU[...].func1"))
}
