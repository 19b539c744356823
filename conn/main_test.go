package conn

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hawser-rpc/hawser/internal/leaktest"
)

var leakOpts = leaktest.Options()

const childEnv = "HAWSER_CONN_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "server" {
		runChildServer()
		return
	}
	goleak.VerifyTestMain(m, leakOpts...)
}

// runChildServer is a hawser server in a separate process, so that tests
// can kill or stop it: "block" never returns, "echo" echoes.
func runChildServer() {
	r := newTestRouter()
	r.handle("block", &Route{Unary: func(ctx context.Context, _ *Request) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	r.handle("echo", echoRoute(ModeInline))
	cfg := &Config{TLS: ServerTLS(testCert(nil)), ClusterKey: testKey, Router: r,
		KeepaliveInterval: -1}
	eng, err := NewEngine(EngineConfig{})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr().String())
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { _, _ = Accept(context.Background(), eng, nc, cfg) }()
	}
}

// child is a hawser server process.
type child struct {
	cmd  *exec.Cmd
	addr string
}

func startChild(t *testing.T) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=server")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case addr := <-line:
		return &child{cmd: cmd, addr: addr}
	case <-time.After(10 * time.Second):
		t.Fatal("child server did not start")
	}
	return nil
}
