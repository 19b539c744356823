package raftbench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"

	"github.com/hawser-rpc/hawser/internal/certgen"
)

// endpoint is one node's transport and what it owns besides.
type endpoint struct {
	tr hraft.Transport
	// release frees what the endpoint owns beyond the transport, once the
	// transport is closed (nil: nothing).
	release func() error
}

// close closes the transport (a second Close of the same transport must be
// harmless: raft's Shutdown may have closed it) and releases the rest.
func (e *endpoint) close() error {
	var errs []error
	if c, ok := e.tr.(hraft.WithClose); ok {
		errs = append(errs, c.Close())
	}
	if e.release != nil {
		errs = append(errs, e.release())
	}
	return errors.Join(errs...)
}

// closeAll closes endpoints concurrently and returns their errors.
func closeAll(eps []*endpoint) error {
	errs := make([]error, len(eps))
	var wg sync.WaitGroup
	for i, e := range eps {
		wg.Go(func() { errs[i] = e.close() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// A factory makes n endpoints of one implementation that can reach each
// other by their LocalAddr.
type factory func(n int, c *creds) ([]*endpoint, error)

var factories = map[string]factory{
	"net-tls": newNetEndpoints(netTLS),
	"net-tcp": newNetEndpoints(netTCP),
	"inmem":   newInmemEndpoints,
}

// Impls returns the implementations this package can run, sorted.
func Impls() []string {
	var out []string
	for n := range factories {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// newEndpoints makes n endpoints of impl; on an error it closes those made.
func newEndpoints(impl string, n int) ([]*endpoint, error) {
	f, ok := factories[impl]
	if !ok {
		return nil, fmt.Errorf("raftbench: unknown transport %q (have %v)", impl, Impls())
	}
	c, err := sharedCreds()
	if err != nil {
		return nil, err
	}
	return f(n, c)
}

// makeEach calls mk n times and closes what it made if one fails.
func makeEach(n int, mk func(i int) (*endpoint, error)) ([]*endpoint, error) {
	eps := make([]*endpoint, 0, n)
	for i := range n {
		e, err := mk(i)
		if err != nil {
			return nil, errors.Join(err, closeAll(eps))
		}
		eps = append(eps, e)
	}
	return eps, nil
}

// NetworkTransport's pool and timeout as Consul configures them: three
// pooled connections per peer, ten seconds per I/O (InstallSnapshot scales
// it by size).
const (
	netMaxPool = 3
	netTimeout = 10 * time.Second
)

type netKind int

const (
	netTLS netKind = iota
	netTCP
)

func newNetEndpoints(kind netKind) factory {
	return func(n int, c *creds) ([]*endpoint, error) {
		return makeEach(n, func(int) (*endpoint, error) {
			var nt *hraft.NetworkTransport
			switch kind {
			case netTLS:
				s, err := listenTLS(c)
				if err != nil {
					return nil, err
				}
				nt = hraft.NewNetworkTransportWithLogger(s, netMaxPool, netTimeout, quietLog)
			case netTCP:
				var err error
				nt, err = hraft.NewTCPTransportWithLogger("127.0.0.1:0", nil, netMaxPool, netTimeout, quietLog)
				if err != nil {
					return nil, err
				}
			}
			// Close stops the listener only: CloseStreams closes the pooled
			// outgoing connections too, so that the peers' connection
			// goroutines see EOF and end.
			return &endpoint{tr: nt, release: func() error { nt.CloseStreams(); return nil }}, nil
		})
	}
}

func newInmemEndpoints(n int, _ *creds) ([]*endpoint, error) {
	trs := make([]*hraft.InmemTransport, n)
	for i := range trs {
		_, trs[i] = hraft.NewInmemTransport("")
	}
	for _, a := range trs {
		for _, b := range trs {
			if a != b {
				a.Connect(b.LocalAddr(), b)
			}
		}
	}
	eps := make([]*endpoint, n)
	for i, t := range trs {
		eps[i] = &endpoint{tr: t}
	}
	return eps, nil
}

// creds are the certificates and the cluster key every run shares: one CA,
// one leaf certificate for localhost and 127.0.0.1 that serves every node,
// and TLS configurations over them.
type creds struct {
	ca         *certgen.CA
	leaf       *certgen.Pair
	clusterKey []byte
	serverTLS  *tls.Config // net-tls: TLS 1.3, client certificates required and verified
	clientTLS  *tls.Config // net-tls: TLS 1.3, server verified as localhost, the leaf as client certificate
}

var sharedCreds = sync.OnceValues(func() (*creds, error) {
	ca, err := certgen.NewCA()
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue("localhost", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	return &creds{
		ca: ca, leaf: leaf,
		clusterKey: []byte("raftbench-cluster-key-32-bytes.."),
		serverTLS: &tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{leaf.Cert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
		},
		clientTLS: &tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{leaf.Cert},
			RootCAs: ca.Pool(), ServerName: "localhost",
		},
	}, nil
})

// quietLog silences raft and its transports.
var quietLog = hclog.NewNullLogger()
