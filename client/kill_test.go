package client_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hawser-rpc/hawser/client"
)

// The child process of TestKilledClientFreesEverything: it subscribes and
// waits to be killed.
const (
	childAddrEnv = "HAWSER_TEST_CHILD_ADDR"
	childCertEnv = "HAWSER_TEST_CHILD_CERT"
)

// runChild connects to the parent's server, takes observables (one with
// nested ones) and a future that never resolves, receives an item of each
// observable, says "ready" and blocks until it is killed.
func runChild() {
	fail := func(err error) {
		fmt.Println("child:", err)
		os.Exit(2)
	}
	pem, err := os.ReadFile(os.Getenv(childCertEnv))
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	c, err := client.Start(ctx, os.Getenv(childAddrEnv), "alice", "pw", client.WithPinnedCertificate(pem))
	if err != nil {
		fail(err)
	}
	forever, err := obsForever.Call(ctx, c, FeedsReq{N: 64, Block: true})
	if err != nil {
		fail(err)
	}
	nested, err := obsFeeds.Call(ctx, c, FeedsReq{N: 1 << 30, Nested: map[string]uint64{"A": 2}, Block: true})
	if err != nil {
		fail(err)
	}
	held := []any{forever.A, forever.B, nested.A, nested.B}
	if _, err := forever.A.Recv(); err != nil {
		fail(err)
	}
	if _, err := forever.B.Recv(); err != nil {
		fail(err)
	}
	if _, err := nested.B.Recv(); err != nil {
		fail(err)
	}
	for range 2 { // A's first two items carry observables: take an item of each
		tk, err := nested.A.Recv()
		if err != nil {
			fail(err)
		}
		if _, err := tk.Sub.Recv(); err != nil {
			fail(err)
		}
		held = append(held, tk.Sub)
	}
	fmt.Println("ready")
	<-time.After(time.Hour)
	runtime.KeepAlive(held)
	runtime.KeepAlive(forever)
}

// TestKilledClientFreesEverything: a client process killed with SIGKILL
// while it holds observables (nested ones among them) and a pending
// future leaves no subscription, producer, goroutine or buffered byte on
// the server.
func TestKilledClientFreesEverything(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	on := startObsNode(t)
	certFile := filepath.Join(t.TempDir(), "cert.pem")
	must(t, os.WriteFile(certFile, on.cert.CertPEM, 0o600))

	// Warm up what the server keeps between connections (pool workers),
	// then count goroutines.
	warm := on.dial(t, "alice", "pw")
	if _, err := obsFuture.Call(context.Background(), warm, 1); err != nil {
		t.Fatal(err)
	}
	f, err := obsFeeds.Call(context.Background(), warm, FeedsReq{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.A.Recv()
	_, _ = f.B.Recv()
	_ = f.A.Close()
	_ = f.B.Close()
	_ = warm.Close()
	waitFor(t, "the warm-up connection to go", func() bool {
		st := on.srv.Observables()
		return on.srv.Conns() == 0 && st.Subscriptions == 0 && st.Producers == 0
	})
	baseline := runtime.NumGoroutine()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childAddrEnv+"="+on.addr, childCertEnv+"="+certFile)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			ready <- sc.Text()
			return
		}
		ready <- "child exited: " + fmt.Sprint(sc.Err())
	}()
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != "ready" {
			t.Fatalf("child: %s", line)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the child did not get ready")
	}
	held := on.srv.Observables()
	// forever: A, B, the future; feeds: A, B and A's first two nested.
	if held.Subscriptions != 7 || held.Producers != 7 || on.srv.Conns() != 1 {
		t.Fatalf("while the child runs: %+v, %d connections; want 7 subscriptions and producers, 1 connection", held, on.srv.Conns())
	}
	during := runtime.NumGoroutine()

	must(t, cmd.Process.Signal(os.Kill))
	_ = cmd.Wait()
	waitFor(t, "the server to free everything the child held", func() bool {
		st := on.srv.Observables()
		return on.srv.Conns() == 0 && st.Subscriptions == 0 && st.Producers == 0 && st.Buffered == 0 &&
			runtime.NumGoroutine() <= baseline
	})
	t.Logf("child held %d subscriptions, %d producers, %d buffered bytes and %d goroutines over the baseline of %d; after SIGKILL: %+v, %d goroutines",
		held.Subscriptions, held.Producers, held.Buffered, during-baseline, baseline, on.srv.Observables(), runtime.NumGoroutine())
}
