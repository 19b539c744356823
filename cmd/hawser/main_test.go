package main

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hawser-rpc/hawser/auth"
)

// runIn runs the program in-process with stdin as its standard input.
func runIn(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestHashPasswordPiped(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stdin    string
		password string
		args     []string
		prefix   string
	}{
		{"argon2id default", "s3cret\n", "s3cret", nil, "$argon2id$v=19$m=19456,t=2,p=1$"},
		{"argon2id params", "pässwörd 日本\r\n", "pässwörd 日本", []string{"--format", "argon2id", "--memory", "64", "--time", "1", "--threads", "2"}, "$argon2id$v=19$m=64,t=1,p=2$"},
		{"shiro1", "hunter2", "hunter2", []string{"--format=shiro1", "--alg", "SHA-512", "--iterations", "1000"}, "$shiro1$SHA-512$1000$"},
		{"shiro1 default", " spaces kept \n", " spaces kept ", []string{"-format", "shiro1", "-iterations", "10"}, "$shiro1$SHA-256$10$"},
		{"one line only", "first\nsecond\n", "first", []string{"--format", "shiro1", "--iterations", "1"}, "$shiro1$SHA-256$1$"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runIn(t, tc.stdin, append([]string{"hash-password"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			hash, ok := strings.CutSuffix(out, "\n")
			if !ok || strings.Contains(hash, "\n") || !strings.HasPrefix(hash, tc.prefix) {
				t.Fatalf("stdout %q: want one line starting %s", out, tc.prefix)
			}
			for _, enc := range []auth.Encryption{auth.EncryptionArgon2id, auth.EncryptionShiro1} {
				v, err := auth.ParseVerifier(enc, hash)
				if err != nil {
					t.Fatalf("%v: %v", enc, err)
				}
				if !v.Verify(tc.password) || v.Verify(tc.password+"x") {
					t.Errorf("%v: %s does not verify %q alone", enc, hash, tc.password)
				}
			}
			if errs != "" {
				t.Errorf("stderr %q, want nothing when piped", errs)
			}
		})
	}
}

func TestHashPasswordErrors(t *testing.T) {
	long := strings.Repeat("x", maxPassword+1)
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
	}{
		{"empty line", "\n", nil, exitError},
		{"no input", "", nil, exitError},
		{"too long", long + "\n", nil, exitError},
		{"too long, no newline", long, nil, exitError},
		{"unknown format", "pw\n", []string{"--format", "bcrypt"}, exitUsage},
		{"--alg with argon2id", "pw\n", []string{"--alg", "SHA-512"}, exitUsage},
		{"--iterations with argon2id", "pw\n", []string{"--format", "argon2id", "--iterations", "5"}, exitUsage},
		{"--memory with shiro1", "pw\n", []string{"--format", "shiro1", "--memory", "64"}, exitUsage},
		{"unknown algorithm", "pw\n", []string{"--format", "shiro1", "--alg", "SHA-3"}, exitError},
		{"iterations over the bound", "pw\n", []string{"--format", "shiro1", "--iterations", "10000001"}, exitError},
		{"argon2id memory too small", "pw\n", []string{"--memory", "7"}, exitError},
		{"threads over 255", "pw\n", []string{"--threads", "256"}, exitUsage},
		{"unknown flag", "pw\n", []string{"--salt", "x"}, exitUsage},
		{"positional argument", "pw\n", []string{"pw"}, exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runIn(t, tc.stdin, append([]string{"hash-password"}, tc.args...)...)
			if code != tc.code || out != "" || errs == "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, an error and no stdout", code, out, errs, tc.code)
			}
		})
	}
	code, _, errs := runIn(t, strings.Repeat("x", maxPassword)+"\r\n", "hash-password", "--format", "shiro1", "--iterations", "1")
	if code != 0 {
		t.Errorf("a password of maxPassword bytes: exit %d: %s", code, errs)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"help"}, {"--help"}, {"nonsense"}, {"hash"}} {
		code, out, errs := runIn(t, "", args...)
		if code != exitUsage || out != "" || !strings.Contains(errs, "usage: hawser") || !strings.Contains(errs, "hash-password") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want usage on stderr and exit 2", args, code, out, errs)
		}
	}
	for _, cmd := range []string{"hash-password", "dev-cert", "cluster-key"} {
		code, out, errs := runIn(t, "", cmd, "--help")
		if code != exitOK || out != "" || !strings.Contains(errs, "hawser "+cmd) {
			t.Errorf("%s --help: exit %d, stdout %q, stderr %q", cmd, code, out, errs)
		}
	}
}

func TestDevCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	code, out, errs := runIn(t, "", "dev-cert", "--host", "node1.example, 127.0.0.1", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for _, want := range []string{
		"\nrpc-cert-path: " + certPath + "\n",
		"\nrpc-key-path: " + keyPath + "\n",
		"\nclient-rpc-cert-path: " + certPath + "\n",
		"\nclient-rpc-key-path: " + keyPath + "\n",
		"node1.example, 127.0.0.1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.Leaf.VerifyHostname("node1.example"); err != nil {
		t.Error(err)
	}
	if err := pair.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem: %v, %v; want mode 0600", fi.Mode(), err)
	}
	// Again into the same directory: refused, nothing overwritten.
	if code, _, errs := runIn(t, "", "dev-cert", "--out", dir); code != exitError || !strings.Contains(errs, "exists") {
		t.Errorf("second dev-cert: exit %d, %q", code, errs)
	}
	if code, _, _ := runIn(t, "", "dev-cert", "--host", " , ", "--out", t.TempDir()); code != exitUsage {
		t.Errorf("--host with no host: exit %d, want 2", code)
	}
}

func TestDevCertQuotesPaths(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a: b #c")
	code, out, errs := runIn(t, "", "dev-cert", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if want := "rpc-cert-path: \"" + filepath.Join(dir, "cert.pem") + "\"\n"; !strings.Contains(out, want) {
		t.Errorf("stdout lacks %q:\n%s", want, out)
	}
}

func TestClusterKey(t *testing.T) {
	code, out, errs := runIn(t, "", "cluster-key")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	key, ok := strings.CutSuffix(out, "\n")
	if b, err := hex.DecodeString(key); !ok || err != nil || len(b) != 32 {
		t.Errorf("stdout %q: want 64 hex digits and a newline", out)
	}
	if _, out2, _ := runIn(t, "", "cluster-key"); out2 == out {
		t.Error("two cluster keys are equal")
	}
	if code, _, _ := runIn(t, "", "cluster-key", "extra"); code != exitUsage {
		t.Errorf("cluster-key extra: exit %d, want 2", code)
	}
}

func TestYAMLString(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/certs/cert.pem":  "/tmp/certs/cert.pem",
		"/tmp/my certs/c.pem":  "/tmp/my certs/c.pem",
		"/tmp/a: b/cert.pem":   `"/tmp/a: b/cert.pem"`,
		"/tmp/#x/cert.pem":     `"/tmp/#x/cert.pem"`,
		` /lead`:               `" /lead"`,
		"-dash":                `"-dash"`,
		`C:\certs\cert.pem`:    `"C:\\certs\\cert.pem"`,
		"/tmp/\"q\"/cert.pem":  `"/tmp/\"q\"/cert.pem"`,
		"/tmp/日本/cert.pem":     "/tmp/日本/cert.pem",
		"/tmp/[x]/cert.pem":    `"/tmp/[x]/cert.pem"`,
		"/tmp/a,b/cert.pem":    `"/tmp/a,b/cert.pem"`,
		"/tmp/percent%/c.pem":  `"/tmp/percent%/c.pem"`,
		"/tmp/tab\there/c.pem": `"/tmp/tab\there/c.pem"`,
	} {
		if got := yamlString(in); got != want {
			t.Errorf("yamlString(%q) = %s, want %s", in, got, want)
		}
	}
}
