package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hawser-rpc/hawser/devcert"
)

func devCert(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hawser dev-cert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hosts := fs.String("host", strings.Join(devcert.DefaultHosts, ","), "comma-separated DNS names and IP addresses the certificate is for")
	out := fs.String("out", ".", "directory to write cert.pem and key.pem to (made if missing; existing files are not overwritten)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	var names []string
	for h := range strings.SplitSeq(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			names = append(names, h)
		}
	}
	if len(names) == 0 {
		fmt.Fprintln(stderr, "hawser dev-cert: --host names no host")
		return exitUsage
	}
	pair, err := devcert.SelfSigned(names...)
	if err != nil {
		fmt.Fprintf(stderr, "hawser dev-cert: %v\n", err)
		return exitError
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		fmt.Fprintf(stderr, "hawser dev-cert: %v\n", err)
		return exitError
	}
	certPath, keyPath, err := pair.WriteFiles(dir)
	if err != nil {
		fmt.Fprintf(stderr, "hawser dev-cert: %v\n", err)
		return exitError
	}
	c, k := yamlString(certPath), yamlString(keyPath)
	fmt.Fprintf(stdout, `# A self-signed certificate for %s, valid until %s.
# For node-to-node RPC, in each node's YAML:
rpc-cert-path: %s
rpc-key-path: %s
# For the client RPC port:
client-rpc-cert-path: %s
client-rpc-key-path: %s
# Clients and peers that verify it trust the certificate itself: %s
`, strings.Join(names, ", "), pair.Leaf.NotAfter.Format("2006-01-02"), c, k, c, k, c)
	return exitOK
}

func clusterKey(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hawser cluster-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	key, err := devcert.ClusterKey()
	if err != nil {
		fmt.Fprintf(stderr, "hawser cluster-key: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, key)
	return exitOK
}

// parseFlags parses args into fs and refuses positional arguments. ok is
// false when the command must stop with code: after --help, or a usage
// error already reported on fs's output.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false // asked for: flag printed the usage
		}
		return exitUsage, false // flag printed the error and the usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return exitUsage, false
	}
	return exitOK, true
}

// yamlString writes s as a YAML scalar: plain when that reads back as s,
// double-quoted otherwise.
func yamlString(s string) string {
	if s == "" || strings.ContainsAny(s, ":#'\"{}[],&*!|>%@`\\\t\n\r") || strings.TrimSpace(s) != s || strings.HasPrefix(s, "-") || strings.HasPrefix(s, "?") {
		return strconv.Quote(s)
	}
	return s
}
