// Package devcert makes what a development or test cluster needs to start:
// a self-signed TLS certificate (SelfSigned), a small certificate authority
// that issues leaf certificates (NewCA, CA.Issue, CA.Pool), and a random
// cluster-key (ClusterKey). Keys are ECDSA P-256; certificates are valid for
// one year, for both server and client authentication. The hawser command
// (cmd/hawser dev-cert, cluster-key) is built on it.
//
// It is not a way to run a production PKI: there is no revocation, no
// renewal, and a CA's key lives only in memory. Use your organization's CA
// for certificates that other people rely on.
package devcert
