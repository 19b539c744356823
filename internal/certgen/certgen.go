package certgen

import "github.com/hawser-rpc/hawser/devcert"

// Pair is a certificate with its key, parsed and PEM-encoded.
type Pair = devcert.Pair

// CA signs leaf certificates (CA.Issue) and trusts them (CA.Pool).
type CA = devcert.CA

// SelfSigned returns a self-signed certificate valid for names (DNS names or
// IP addresses) for one year.
func SelfSigned(names ...string) (*Pair, error) { return devcert.SelfSigned(names...) }

// NewCA returns a new self-signed certificate authority.
func NewCA() (*CA, error) { return devcert.NewCA() }
