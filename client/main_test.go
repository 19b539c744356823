package client_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/hawser-rpc/hawser/internal/leaktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leaktest.Options()...) }
