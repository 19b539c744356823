package fuzz

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/hawser-rpc/hawser/internal/leaktest"
)

// Harnesses are started lazily, once per process, by the first input of the
// target that needs them (a fuzzing worker runs one target), and closed
// here after every test and input has run, before the goroutine check.
var (
	closersMu sync.Mutex
	closers   []func()
)

// atExit registers f to run, in reverse order, when the tests are done.
func atExit(f func()) {
	closersMu.Lock()
	defer closersMu.Unlock()
	closers = append(closers, f)
}

func runClosers() {
	closersMu.Lock()
	fs := closers
	closers = nil
	closersMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	runClosers()
	if code == 0 {
		if err := goleak.Find(leaktest.Options()...); err != nil {
			fmt.Fprintf(os.Stderr, "fuzz: goroutines left behind: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
