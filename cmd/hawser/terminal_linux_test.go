package main

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hawser-rpc/hawser/auth"
)

// openPTY returns the two ends of a new pseudo-terminal: the program reads
// from tty as from a terminal, and the test types into and reads what the
// terminal shows from ptm.
func openPTY(t *testing.T) (ptm, tty *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return ptm, tty
}

// typeWhenSilent waits until tty's echo is off (the program is reading a
// password) and then types input, so that any echo would be the
// program's doing.
func typeWhenSilent(t *testing.T, ptm, tty *os.File, input string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		if err != nil {
			t.Error(err)
			return
		}
		if tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Error("echo was never turned off")
			return
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := ptm.WriteString(input); err != nil {
		t.Error(err)
	}
}

// shown returns what the terminal showed so far: what ptm has to read
// within 100ms of each read. (Poll, as ptm's fd is in blocking mode once
// Fd has been called, and deadlines do not apply to it.)
func shown(t *testing.T, ptm *os.File) string {
	t.Helper()
	var b bytes.Buffer
	buf := make([]byte, 4096)
	fd := int(ptm.Fd())
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 || fds[0].Revents&unix.POLLIN == 0 {
			return b.String()
		}
		m, err := unix.Read(fd, buf)
		if m <= 0 || err != nil {
			return b.String()
		}
		b.Write(buf[:m])
	}
}

func runOnTerminal(t *testing.T, typed string, args ...string) (code int, stdout, stderr, screen string) {
	ptm, tty := openPTY(t)
	before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	typing := make(chan struct{})
	go func() {
		defer close(typing)
		typeWhenSilent(t, ptm, tty, typed)
	}()
	var out, errb bytes.Buffer
	code = run(args, tty, &out, &errb)
	<-typing
	after, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if after.Lflag != before.Lflag {
		t.Errorf("terminal flags %#x after, %#x before: not restored", after.Lflag, before.Lflag)
	}
	return code, out.String(), errb.String(), shown(t, ptm)
}

// TestHashPasswordTerminal: on a terminal the password is asked for twice
// on stderr, never echoed, and its hash verifies.
func TestHashPasswordTerminal(t *testing.T) {
	code, out, errs, screen := runOnTerminal(t, "s3cret-pässword\ns3cret-pässword\n", "hash-password", "--format", "shiro1", "--iterations", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if strings.Contains(screen, "s3cret") {
		t.Errorf("the password was echoed: terminal shows %q", screen)
	}
	if !strings.Contains(errs, "Password: ") || !strings.Contains(errs, "Again: ") {
		t.Errorf("stderr %q: want both prompts", errs)
	}
	v, err := auth.ParseVerifier(auth.EncryptionShiro1, strings.TrimSuffix(out, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Verify("s3cret-pässword") {
		t.Errorf("%s does not verify the typed password", out)
	}
}

func TestHashPasswordTerminalMismatch(t *testing.T) {
	code, out, errs, screen := runOnTerminal(t, "one\ntwo\n", "hash-password", "--format", "shiro1", "--iterations", "1")
	if code != exitError || out != "" || !strings.Contains(errs, errMismatch.Error()) {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errs, errMismatch)
	}
	if strings.Contains(screen, "one") || strings.Contains(screen, "two") {
		t.Errorf("a password was echoed: terminal shows %q", screen)
	}
}
