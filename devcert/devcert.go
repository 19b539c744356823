package devcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Validity is how long the certificates made here are valid, from an hour
// before they are made (to allow for clock skew).
const Validity = 365 * 24 * time.Hour

// DefaultHosts are the names SelfSigned certifies when it is given none.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Pair is a certificate with its private key, parsed and PEM-encoded. The
// fields are set once by the function that makes it; do not modify them.
type Pair struct {
	// Cert is the pair for tls.Config.Certificates.
	Cert tls.Certificate
	// CertPEM is the certificate as a PEM "CERTIFICATE" block.
	CertPEM []byte
	// KeyPEM is the private key as a PEM "PRIVATE KEY" block (PKCS #8).
	KeyPEM []byte
	// Leaf is the parsed certificate.
	Leaf *x509.Certificate
}

// SelfSigned returns a new self-signed certificate for hosts (DNS names or
// IP addresses; DefaultHosts if none). It is its own CA: a peer trusts it
// by putting it in its roots (Pair.Pool, or rpc-ca-path pointing at
// cert.pem).
func SelfSigned(hosts ...string) (*Pair, error) {
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl, err := template(hosts)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	return sign(tmpl, tmpl, key, key)
}

// Pool returns a certificate pool holding p's certificate: the roots of a
// peer that trusts a self-signed p.
func (p *Pair) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.Leaf)
	return pool
}

// File names that WriteFiles writes.
const (
	CertFile = "cert.pem"
	KeyFile  = "key.pem"
)

// WriteFiles writes p's certificate to dir/cert.pem (mode 0644) and its key
// to dir/key.pem (mode 0600), making dir (mode 0700) if it does not exist,
// and returns the two paths. It overwrites neither file: if one exists it
// returns an error wrapping fs.ErrExist and writes nothing.
func (p *Pair) WriteFiles(dir string) (certPath, keyPath string, err error) {
	certPath, keyPath = filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("devcert: %w", err)
	}
	for _, path := range []string{certPath, keyPath} {
		if _, err := os.Lstat(path); err == nil {
			return "", "", fmt.Errorf("devcert: %s: %w", path, os.ErrExist)
		}
	}
	if err := writeNew(keyPath, p.KeyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeNew(certPath, p.CertPEM, 0o644); err != nil {
		_ = os.Remove(keyPath)
		return "", "", err
	}
	return certPath, keyPath, nil
}

// writeNew writes data to a file that must not exist yet, created with
// perm (less the umask) so a key is never readable by others, even briefly.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("devcert: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("devcert: %w", err)
	}
	return nil
}

// CA is a certificate authority held in memory, for tests and development
// clusters whose nodes verify each other's certificates against one root.
type CA struct {
	// Pair is the CA's own self-signed certificate and key. Its CertPEM is
	// what rpc-ca-path points at.
	*Pair
	key *ecdsa.PrivateKey
}

// NewCA returns a new certificate authority.
func NewCA() (*CA, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl, err := template(nil)
	if err != nil {
		return nil, err
	}
	tmpl.Subject.CommonName = "hawser development CA"
	tmpl.IsCA = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = nil
	p, err := sign(tmpl, tmpl, key, key)
	if err != nil {
		return nil, err
	}
	return &CA{Pair: p, key: key}, nil
}

// Pool returns a certificate pool holding the CA: the roots of a peer that
// trusts the certificates it issues.
func (ca *CA) Pool() *x509.CertPool { return ca.Pair.Pool() }

// Issue returns a new leaf certificate for hosts (DNS names or IP
// addresses), signed by the CA, for server and client authentication.
// Hosts may be empty for a client certificate.
func (ca *CA) Issue(hosts ...string) (*Pair, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl, err := template(hosts)
	if err != nil {
		return nil, err
	}
	return sign(tmpl, ca.Leaf, key, ca.key)
}

// ClusterKey returns a new random cluster-key: 32 random bytes as 64
// lowercase hex digits, text that YAML, shells and environment variables
// take as it is. The key is the text itself (cluster-key is used as its
// bytes), so it carries 256 bits, well over the 16 bytes required.
func ClusterKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("devcert: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devcert: %w", err)
	}
	return key, nil
}

// template is a leaf certificate for hosts, valid from an hour ago for
// Validity. Its common name is the first host ("hawser" with none).
func template(hosts []string) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, fmt.Errorf("devcert: %w", err)
	}
	now := time.Now()
	t := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)), // positive
		Subject:               pkix.Name{CommonName: "hawser", Organization: []string{"hawser development"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if h == "" {
			return nil, errors.New("devcert: empty host name")
		}
		if ip := net.ParseIP(h); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else {
			t.DNSNames = append(t.DNSNames, h)
		}
	}
	if len(hosts) > 0 {
		t.Subject.CommonName = hosts[0]
	}
	return t, nil
}

func sign(tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) (*Pair, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, fmt.Errorf("devcert: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("devcert: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("devcert: %w", err)
	}
	p := &Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		Leaf:    leaf,
	}
	if p.Cert, err = tls.X509KeyPair(p.CertPEM, p.KeyPEM); err != nil {
		return nil, fmt.Errorf("devcert: %w", err)
	}
	return p, nil
}
