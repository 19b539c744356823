// Package certgen makes TLS certificates in memory: a self-signed one for
// demos and tests, and a small CA that signs leaf certificates, for tests of
// certificate verification. Keys are ECDSA P-256.
package certgen
