package auth_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/hawser-rpc/hawser/auth"
)

// Users from the configuration, a login, and a permission check, as a
// client port makes them.
func Example() {
	src, err := auth.NewInMemory(auth.EncryptionNone, []auth.UserConfig{
		{Username: "ops", Password: "correct horse", Permissions: []string{"InvokeRpc.kv.Get", "StartFlow.rebalance"}},
	})
	if err != nil {
		panic(err)
	}
	svc, err := auth.New(auth.Config{Source: src, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		panic(err)
	}
	from := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	_, err = svc.Login(context.Background(), from, "ops", "wrong")
	fmt.Println(err)
	sess, err := svc.Login(context.Background(), from, "ops", "correct horse")
	if err != nil {
		panic(err)
	}
	fmt.Println(sess.CheckMethod(context.Background(), "kv.Get"))
	fmt.Println(sess.CheckMethod(context.Background(), "kv.Put"))
	fmt.Println(sess.CheckFlow(context.Background(), "rebalance"))
	// Output:
	// hawser: login failed: wrong username or password
	// <nil>
	// hawser: permission denied
	// <nil>
}
