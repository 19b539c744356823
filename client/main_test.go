package client_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/hawser-rpc/hawser/internal/leaktest"
)

func TestMain(m *testing.M) {
	if os.Getenv(childAddrEnv) != "" {
		runChild()
		return
	}
	goleak.VerifyTestMain(m, leaktest.Options()...)
}
