package devcert

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSelfSigned(t *testing.T) {
	p, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range DefaultHosts {
		if err := p.Leaf.VerifyHostname(host); err != nil {
			t.Errorf("default hosts: %v", err)
		}
	}
	p, err = SelfSigned("node1.example", "10.1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if p.Leaf.Subject.CommonName != "node1.example" || len(p.Leaf.DNSNames) != 1 || len(p.Leaf.IPAddresses) != 1 {
		t.Errorf("names: CN %q, DNS %v, IP %v", p.Leaf.Subject.CommonName, p.Leaf.DNSNames, p.Leaf.IPAddresses)
	}
	if p.Leaf.VerifyHostname("localhost") == nil {
		t.Error("certifies localhost, which it was not asked for")
	}
	for _, host := range []string{"node1.example", "10.1.2.3"} {
		if _, err := p.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: p.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if d := time.Until(p.Leaf.NotAfter); d < Validity-time.Minute || d > Validity {
		t.Errorf("valid for %v more, want %v", d, Validity)
	}
	if time.Since(p.Leaf.NotBefore) < 59*time.Minute {
		t.Errorf("NotBefore %v allows no clock skew", p.Leaf.NotBefore)
	}
	q, _ := SelfSigned("node1.example")
	if p.Leaf.SerialNumber.Cmp(q.Leaf.SerialNumber) == 0 {
		t.Error("two certificates share a serial number")
	}
	if _, err := SelfSigned("a", ""); err == nil {
		t.Error("an empty host name was accepted")
	}
	if _, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM); err != nil {
		t.Errorf("PEM does not load: %v", err)
	}
	handshake(t, p, p.Pool(), nil, nil, "node1.example")
}

func TestCA(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Leaf.IsCA || ca.Leaf.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("the CA cannot sign certificates")
	}
	server, err := ca.Issue("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue()
	if err != nil {
		t.Fatal(err)
	}
	if server.Leaf.IsCA {
		t.Error("a leaf is a CA")
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := server.Leaf.Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Errorf("usage %v: %v", u, err)
		}
	}
	other, _ := NewCA()
	if _, err := server.Leaf.Verify(x509.VerifyOptions{Roots: other.Pool()}); err == nil {
		t.Error("verifies against another CA")
	}
	handshake(t, server, ca.Pool(), client, ca.Pool(), "localhost")
}

// handshake runs a TLS handshake over an in-memory pipe: server presents
// srv, the client trusts roots and, if cli is set, presents it to a server
// that requires and verifies it against clientRoots.
func handshake(t *testing.T, srv *Pair, roots *x509.CertPool, cli *Pair, clientRoots *x509.CertPool, name string) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	scfg := &tls.Config{Certificates: []tls.Certificate{srv.Cert}, MinVersion: tls.VersionTLS13}
	ccfg := &tls.Config{RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS13}
	if cli != nil {
		scfg.ClientAuth, scfg.ClientCAs = tls.RequireAndVerifyClientCert, clientRoots
		ccfg.Certificates = []tls.Certificate{cli.Cert}
	}
	errc := make(chan error, 1)
	go func() { errc <- tls.Server(a, scfg).Handshake() }()
	cerr := tls.Client(b, ccfg).Handshake()
	if cerr != nil {
		b.Close()
	}
	serr := <-errc
	if cerr != nil || serr != nil {
		t.Errorf("handshake: client %v, server %v", cerr, serr)
	}
}

func TestWriteFiles(t *testing.T) {
	p, err := SelfSigned("localhost")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "a", "b")
	certPath, keyPath, err := p.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if certPath != filepath.Join(dir, "cert.pem") || keyPath != filepath.Join(dir, "key.pem") {
		t.Errorf("paths %s, %s", certPath, keyPath)
	}
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem mode %v, want 0600", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("made dir mode %v, want 0700", fi.Mode().Perm())
	}
	if _, err := tls.LoadX509KeyPair(certPath, keyPath); err != nil {
		t.Errorf("written files do not load: %v", err)
	}
	before, _ := os.ReadFile(keyPath)
	q, _ := SelfSigned("localhost")
	if _, _, err := q.WriteFiles(dir); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second WriteFiles: %v, want fs.ErrExist", err)
	}
	if after, _ := os.ReadFile(keyPath); string(after) != string(before) {
		t.Error("second WriteFiles overwrote key.pem")
	}
	// Only cert.pem there: still nothing is written.
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, CertFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := q.WriteFiles(dir2); !errors.Is(err, fs.ErrExist) {
		t.Errorf("WriteFiles over cert.pem: %v, want fs.ErrExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, KeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("key.pem written next to an existing cert.pem: %v", err)
	}
}

func TestClusterKey(t *testing.T) {
	k, err := ClusterKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(k)
	if err != nil || len(b) != 32 || len(k) != 64 {
		t.Errorf("ClusterKey() = %q: want 64 hex digits (%v)", k, err)
	}
	if k2, _ := ClusterKey(); k2 == k {
		t.Error("two cluster keys are equal")
	}
}
