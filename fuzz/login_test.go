package fuzz

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"

	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/codec"
	"github.com/hawser-rpc/hawser/server"
)

var (
	loginOnce    sync.Once
	theLoginGate *gate
	loginGateErr error
)

// getLoginGate is a gate on a client port: one user whose password is 32
// random bytes, no login limit (so the fuzzer is never locked out).
func getLoginGate(t testing.TB) *gate {
	loginOnce.Do(func() {
		pw := make([]byte, 32)
		_, _ = rand.Read(pw)
		src, err := auth.NewInMemory(auth.EncryptionNone, []auth.UserConfig{{Username: "fuzz", Password: hex.EncodeToString(pw), Permissions: []string{"ALL"}}})
		if err != nil {
			loginGateErr = err
			return
		}
		svc, err := auth.New(auth.Config{Source: src, Limit: auth.LoginLimit{Failures: -1}, Logger: discard})
		if err != nil {
			loginGateErr = err
			return
		}
		theLoginGate, loginGateErr = newGate(t, func(c *server.Config) { c.Auth = svc })
	})
	if loginGateErr != nil {
		t.Fatalf("starting the client port: %v", loginGateErr)
	}
	return theLoginGate
}

// FuzzLoginAcceptor: a hostile client on a client port (PROTOCOL.md §5.4)
// sends, after TLS, what FuzzHandshakeAcceptor's variants send (mode&3),
// or (mode&4) a well-formed HELLO whose username and password are cut from
// the data at its first byte. The acceptor must refuse it within its
// Timeout with at most one GOAWAY and a typed error, and no handler runs.
func FuzzLoginAcceptor(f *testing.F) {
	f.Add(byte(4), []byte("\x04fuzzwrong"))
	f.Add(byte(4), []byte("\x00"))
	f.Add(byte(4), []byte("\xffx"))
	f.Add(byte(2), []byte{12, 0, 1, 'a'})
	f.Add(byte(3), []byte("proof"))
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		if mode&4 == 0 {
			acceptorCase(t, getLoginGate(t), mode, data, false)
			return
		}
		h := codec.Hello{NodeID: "fuzz-client"}
		if len(data) > 0 {
			k := min(int(data[0]), len(data)-1)
			h.Username, h.Password = string(data[1:1+k]), string(data[1+k:])
		}
		body, err := codec.AppendHello(nil, &h)
		if err != nil { // over the field limits: send them anyway, raw
			body = data
		}
		acceptorCase(t, getLoginGate(t), 2, body, false)
	})
}
