package server_test

import (
	"errors"
	"fmt"

	"github.com/hawser-rpc/hawser/config"
	"github.com/hawser-rpc/hawser/server"
)

// A node's YAML file, with the product's keys, becomes a server Config.
func ExampleConfigFromNode() {
	n, err := config.Parse([]byte(`
rpc-bind-addr: 10.0.0.2
rpc-port: 7911
rpc-cert-path: /etc/hawser/cert.pem
rpc-key-path: /etc/hawser/key.pem
rpc-timeout: 1000
rpc-inactivity-timeout: 300000
cluster-key: change-me-to-a-long-secret
node-id: node-2
`))
	if err != nil {
		panic(err)
	}
	cfg := server.ConfigFromNode(n)
	fmt.Println(cfg.BindAddr, cfg.Port, cfg.Timeout, cfg.InactivityTimeout, cfg.NodeID)

	// Without a certificate the server refuses to start, and says how to
	// make one.
	_, err = server.New(server.Config{ClusterKey: []byte(n.ClusterKey)})
	fmt.Println(errors.Is(err, server.ErrNoCertificate))
	// Output:
	// 10.0.0.2 7911 1s 5m0s node-2
	// true
}
