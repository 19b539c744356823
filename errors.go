package hawser

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hawser-rpc/hawser/codec"
)

// Code classifies a remote error; see codec.Code for the values.
type Code = codec.Code

// ErrTransport matches every *TransportError: the connection a call used
// failed or could not be made, so the call may or may not have run.
var ErrTransport = errors.New("hawser: transport failure")

// ErrRemote matches every *RemoteError: the peer answered the call with an
// error.
var ErrRemote = errors.New("hawser: remote error")

// TransportError is a failure of the connection under a call: a dial, TLS or
// authentication failure, a broken or closed connection, a peer that stopped
// answering. It satisfies net.Error.
type TransportError struct {
	Op   string // "dial", "handshake", "call", "stream", ...
	Addr string // the peer's address, if known
	Err  error  // the cause
}

func (e *TransportError) Error() string {
	if e.Addr != "" {
		return fmt.Sprintf("hawser: %s %s: %v", e.Op, e.Addr, e.Err)
	}
	return fmt.Sprintf("hawser: %s: %v", e.Op, e.Err)
}

func (e *TransportError) Unwrap() error        { return e.Err }
func (e *TransportError) Is(target error) bool { return target == ErrTransport }

// Timeout reports whether the cause was a timeout.
func (e *TransportError) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.Is(e.Err, context.DeadlineExceeded) || (errors.As(e.Err, &t) && t.Timeout())
}

// Temporary is always true: a transport failure may go away on retry.
func (e *TransportError) Temporary() bool { return true }

// RemoteError is an error returned by a handler, re-created on the caller.
// If the peer named a sentinel registered here with RegisterError,
// errors.Is(err, sentinel) holds; codes Canceled and DeadlineExceeded
// unwrap to context.Canceled and context.DeadlineExceeded.
type RemoteError struct {
	Code    Code
	Name    string // the registered name the peer sent, or ""
	Message string // the handler error's text

	sentinel error
}

func (e *RemoteError) Error() string {
	if e.Name != "" {
		return fmt.Sprintf("remote %s (%s): %s", e.Name, e.Code, e.Message)
	}
	return fmt.Sprintf("remote %s: %s", e.Code, e.Message)
}

func (e *RemoteError) Unwrap() error        { return e.sentinel }
func (e *RemoteError) Is(target error) bool { return target == ErrRemote }

// NewRemoteError re-creates a remote error from its wire form.
func NewRemoteError(code Code, name, message string) *RemoteError {
	e := &RemoteError{Code: code, Name: name, Message: message}
	if name != "" {
		if r, ok := lookupName(name); ok {
			e.sentinel = r.err
		}
	}
	if e.sentinel == nil {
		switch code {
		case codec.CodeCanceled:
			e.sentinel = context.Canceled
		case codec.CodeDeadlineExceeded:
			e.sentinel = context.DeadlineExceeded
		}
	}
	return e
}

// Coder is implemented by errors that choose their own wire code.
type Coder interface {
	RPCCode() Code
}

type registered struct {
	name string
	code Code
	err  error
}

var registry struct {
	sync.RWMutex
	byName map[string]registered
	list   []registered
}

// RegisterError registers a sentinel error under a name that is stable
// across versions, with the code it travels under. A handler error that
// matches the sentinel (errors.Is) is sent with that name and code; a
// caller that receives the name gets a *RemoteError that unwraps to its own
// registration of the name. Register the same names on both sides, at init.
// It panics on an empty or repeated name, a name over 255 bytes or a nil
// sentinel: those are programming errors.
func RegisterError(name string, code Code, sentinel error) {
	if name == "" || len(name) > 255 || sentinel == nil || code == codec.CodeOK {
		panic("hawser: RegisterError needs a name of 1 to 255 bytes, a code and a sentinel")
	}
	registry.Lock()
	defer registry.Unlock()
	if registry.byName == nil {
		registry.byName = map[string]registered{}
	}
	if _, dup := registry.byName[name]; dup {
		panic("hawser: error name registered twice: " + name)
	}
	r := registered{name: name, code: code, err: sentinel}
	registry.byName[name] = r
	registry.list = append(registry.list, r)
}

func lookupName(name string) (registered, bool) {
	registry.RLock()
	defer registry.RUnlock()
	r, ok := registry.byName[name]
	return r, ok
}

// WireError returns the code, registered name and message a handler error
// travels as. Order: a *RemoteError passes through as it came; a registered
// sentinel in the chain gives its name and code; a Coder gives its code;
// context errors give Canceled or DeadlineExceeded; anything else is
// CodeUnknown.
func WireError(err error) (Code, string, string) {
	msg := err.Error()
	var re *RemoteError
	if errors.As(err, &re) {
		return re.Code, re.Name, re.Message
	}
	registry.RLock()
	for _, r := range registry.list {
		if errors.Is(err, r.err) {
			registry.RUnlock()
			return r.code, r.name, msg
		}
	}
	registry.RUnlock()
	var c Coder
	switch {
	case errors.As(err, &c):
		return c.RPCCode(), "", msg
	case errors.Is(err, context.DeadlineExceeded):
		return codec.CodeDeadlineExceeded, "", msg
	case errors.Is(err, context.Canceled):
		return codec.CodeCanceled, "", msg
	}
	return codec.CodeUnknown, "", msg
}

// Client RPC errors (PROTOCOL.md §5.4). They are registered sentinels, so
// a server's refusal is re-created on the client: errors.Is(err,
// hawser.ErrPermissionDenied) holds for a *RemoteError that carries it.
var (
	// ErrPermissionDenied: the logged-in user may not call this method or
	// start this flow. The handler did not run.
	ErrPermissionDenied = errors.New("hawser: permission denied")
	// ErrLoginFailed: the username or the password is wrong. It never
	// says which: an unknown user and a wrong password get the same error.
	ErrLoginFailed = errors.New("hawser: login failed: wrong username or password")
	// ErrLoginLimited: too many logins from this source address failed;
	// the server refuses logins from it until the lockout ends.
	ErrLoginLimited = errors.New("hawser: too many failed logins from this address; retry later")
	// ErrUnsupported: the server is older than what the call needs (a
	// method declared Since a later platform version, or a minimum the
	// client asked for). A method call that fails with it sent nothing.
	ErrUnsupported = errors.New("hawser: not supported by the server's platform version")
	// ErrUnknownFlow: no flow is registered under the name startFlow was
	// given (asked only once the user may start it).
	ErrUnknownFlow = errors.New("hawser: unknown flow")
)

func init() {
	RegisterError("hawser.PermissionDenied", codec.CodePermissionDenied, ErrPermissionDenied)
	RegisterError("hawser.LoginFailed", codec.CodeUnauthenticated, ErrLoginFailed)
	RegisterError("hawser.LoginLimited", codec.CodeResourceExhausted, ErrLoginLimited)
	RegisterError("hawser.Unsupported", codec.CodeUnimplemented, ErrUnsupported)
	RegisterError("hawser.UnknownFlow", codec.CodeNotFound, ErrUnknownFlow)
}
