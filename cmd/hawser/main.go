package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit codes of run.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // the command line is wrong
)

const usage = `usage: hawser <command> [flags]

commands:
  hash-password [--format argon2id|shiro1] [--alg SHA-256] [--iterations N]
                [--memory KiB] [--time N] [--threads N]
        hash a password for a data source with password-encryption ARGON2ID or
        SHIRO_1_CRYPT; it is read from the terminal without echo (twice), or as
        one line from standard input when that is not a terminal
  dev-cert [--host h1,h2] [--out dir]
        write a self-signed development certificate (cert.pem, key.pem) and
        print the YAML lines that use it
  cluster-key
        print a new random cluster-key
  help
        print this message

Run "hawser <command> --help" for a command's flags.
`

// run is the whole program: args without the program name, and the
// streams it uses. It returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "hash-password":
		return hashPassword(rest, stdin, stdout, stderr)
	case "dev-cert":
		return devCert(rest, stdout, stderr)
	case "cluster-key":
		return clusterKey(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	fmt.Fprintf(stderr, "hawser: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}
