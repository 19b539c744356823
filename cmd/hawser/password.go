package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/term"

	"github.com/hawser-rpc/hawser/auth"
)

// maxPassword bounds a password read from standard input.
const maxPassword = 4096

func hashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hawser hash-password", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("format", "argon2id", "hash format: argon2id (password-encryption ARGON2ID) or shiro1 (SHIRO_1_CRYPT, readable by Shiro and Corda)")
	alg := fs.String("alg", auth.DefaultShiro1Algorithm, "shiro1 only: SHA-256, SHA-512, SHA-384, SHA-1 or MD5")
	iterations := fs.Int("iterations", auth.DefaultShiro1Iterations, fmt.Sprintf("shiro1 only: hash iterations, 1 to %d", auth.MaxShiro1Iterations))
	memory := fs.Uint("memory", uint(auth.DefaultArgon2Params.Memory), "argon2id only: memory in KiB (m), up to 1048576")
	passes := fs.Uint("time", uint(auth.DefaultArgon2Params.Time), "argon2id only: passes over the memory (t), 1 to 32")
	threads := fs.Uint("threads", uint(auth.DefaultArgon2Params.Threads), "argon2id only: lanes (p), 1 to 255")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var other []string
	switch *format {
	case "argon2id":
		other = []string{"alg", "iterations"}
	case "shiro1":
		other = []string{"memory", "time", "threads"}
	default:
		fmt.Fprintf(stderr, "hawser hash-password: --format %q: want argon2id or shiro1\n", *format)
		return exitUsage
	}
	for _, name := range other {
		if set[name] {
			fmt.Fprintf(stderr, "hawser hash-password: --%s does not apply to --format %s\n", name, *format)
			return exitUsage
		}
	}
	if *memory > 1<<32-1 || *passes > 1<<32-1 || *threads > 255 {
		fmt.Fprintln(stderr, "hawser hash-password: --memory, --time or --threads out of range")
		return exitUsage
	}

	password, err := readPassword(stdin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "hawser hash-password: %v\n", err)
		return exitError
	}
	var hash string
	if *format == "shiro1" {
		hash, err = auth.HashShiro1(password, *alg, *iterations)
	} else {
		hash, err = auth.HashArgon2id(password, auth.Argon2Params{Memory: uint32(*memory), Time: uint32(*passes), Threads: uint8(*threads)})
	}
	if err != nil {
		fmt.Fprintf(stderr, "hawser hash-password: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, hash)
	return exitOK
}

// errMismatch: the two passwords typed differ.
var errMismatch = errors.New("the passwords do not match")

// readPassword reads the password from the terminal stdin is, without
// echo and twice, prompting on stderr; or, when stdin is not a terminal,
// one line from it (the newline, or \r\n, is not part of the password).
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return readTerminal(int(f.Fd()), stderr)
	}
	return readLine(stdin)
}

// readLine reads one line of at most maxPassword bytes.
func readLine(r io.Reader) (string, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxPassword+2), maxPassword+2).ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return "", fmt.Errorf("password longer than %d bytes", maxPassword)
	case errors.Is(err, io.EOF):
		if len(line) > maxPassword {
			return "", fmt.Errorf("password longer than %d bytes", maxPassword)
		}
	case err != nil:
		return "", fmt.Errorf("reading the password: %w", err)
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) > maxPassword {
		return "", fmt.Errorf("password longer than %d bytes", maxPassword)
	}
	return string(line), nil
}

// readTerminal prompts twice and reads without echo. An interrupt while it
// reads puts the terminal back as it was (echo on) before the program
// exits.
func readTerminal(fd int, stderr io.Writer) (string, error) {
	old, err := term.GetState(fd)
	if err != nil {
		return "", fmt.Errorf("terminal: %w", err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-sig:
			_ = term.Restore(fd, old)
			fmt.Fprintln(stderr)
			os.Exit(130)
		case <-done:
		}
	})
	defer func() {
		signal.Stop(sig)
		close(done)
		wg.Wait()
	}()

	var pw [2]string
	for i, prompt := range [2]string{"Password: ", "Again: "} {
		fmt.Fprint(stderr, prompt)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		pw[i] = string(b)
	}
	if pw[0] != pw[1] {
		return "", errMismatch
	}
	return pw[0], nil
}
