package devcert_test

import (
	"crypto/tls"
	"fmt"
	"log"
	"os"

	"github.com/hawser-rpc/hawser/devcert"
)

// A self-signed certificate for a development node, written where the
// node's YAML points (rpc-cert-path, rpc-key-path), and a TLS config for a
// client that trusts it.
func ExampleSelfSigned() {
	pair, err := devcert.SelfSigned("localhost", "127.0.0.1")
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "hawser-dev")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	certPath, keyPath, err := pair.WriteFiles(dir)
	if err != nil {
		log.Fatal(err)
	}
	_ = certPath // rpc-cert-path
	_ = keyPath  // rpc-key-path
	client := &tls.Config{RootCAs: pair.Pool(), ServerName: "localhost"}
	_ = client

	fmt.Println(pair.Leaf.Subject.CommonName, pair.Leaf.DNSNames, pair.Leaf.IPAddresses)
	// Output: localhost [localhost] [127.0.0.1]
}

// A CA for a test cluster: every node gets a certificate it issues and
// trusts the CA's pool.
func ExampleNewCA() {
	ca, err := devcert.NewCA()
	if err != nil {
		log.Fatal(err)
	}
	node, err := ca.Issue("node1.internal")
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{node.Cert}, RootCAs: ca.Pool(), ClientCAs: ca.Pool()}
	_ = cfg

	fmt.Println(node.Leaf.Issuer.CommonName, "issued", node.Leaf.Subject.CommonName)
	// Output: hawser development CA issued node1.internal
}

func ExampleClusterKey() {
	key, err := devcert.ClusterKey()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("cluster-key: %d hex digits\n", len(key))
	// Output: cluster-key: 64 hex digits
}
