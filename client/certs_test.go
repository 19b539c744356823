package client_test

import (
	"crypto/x509"

	"github.com/hawser-rpc/hawser/internal/certgen"
)

func certgenSelfSigned() ([]byte, error) {
	p, err := certgen.SelfSigned("localhost", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	return p.CertPEM, nil
}

func certPool(p *certgen.Pair) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.Leaf)
	return pool
}
