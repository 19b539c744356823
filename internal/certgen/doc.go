// Package certgen makes TLS certificates in memory for the repository's
// tests, demos and benchmarks: a self-signed one, and a small CA that
// signs leaf certificates. It is a thin wrapper over the public package
// devcert, kept so that its callers need not change; new code should use
// devcert. Keys are ECDSA P-256.
package certgen
