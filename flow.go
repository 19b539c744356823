package hawser

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hawser-rpc/hawser/codec"
)

// PlatformVersionMethod is the method that answers a server's platform
// version (a u32, big-endian); it needs no permission on a client port.
const PlatformVersionMethod = "hawser.platformVersion"

// StartFlowMethod is the method flows are started through (PROTOCOL.md
// §5.4).
const StartFlowMethod = "startFlow"

var startFlowID = codec.MethodID(StartFlowMethod)

// PlatformVersioned is a Caller that knows its server's platform version
// (a client connection): methods declared Since a later version fail
// locally on it, sending nothing.
type PlatformVersioned interface {
	PlatformVersion() uint32
}

// Since declares that a method, stream or flow exists from platform
// version v of the server on: calling it through a connection to an older
// server (a PlatformVersioned Caller) fails with ErrUnsupported without
// sending a frame.
func Since(v uint32) MethodOption { return func(o *methodOptions) { o.since = v } }

// checkSince fails a call that needs a newer server than c's.
func checkSince(c Caller, name string, since uint32) error {
	if since == 0 {
		return nil
	}
	pv, ok := c.(PlatformVersioned)
	if !ok {
		return nil
	}
	if have := pv.PlatformVersion(); have < since {
		return &VersionError{Name: name, Required: since, Server: have}
	}
	return nil
}

// VersionError is ErrUnsupported with the versions: what a method (Name)
// or the client (Name "") requires, and what the server announced.
type VersionError struct {
	Name     string
	Required uint32
	Server   uint32
}

func (e *VersionError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("hawser: the server's platform version is %d; this client requires at least %d", e.Server, e.Required)
	}
	return fmt.Sprintf("hawser: %s needs platform version %d; the server's is %d", e.Name, e.Required, e.Server)
}

func (e *VersionError) Is(target error) bool { return target == ErrUnsupported }

// Flow is a named workflow (Corda's flows), started through the one
// method startFlow: one definition shared by client and server
// (server.RegisterFlow). A client RPC user needs StartFlow.<name>,
// InvokeRpc.startFlow or ALL.
type Flow[Req, Resp any] struct {
	name       string
	req        Codec[Req]
	resp       Codec[Resp]
	since      uint32
	idempotent bool
	holds      bool // Resp may hold observables or futures
}

// NewFlow defines a flow; see NewMethod for the codecs. Options: Since,
// Idempotent (a flow is not, by default).
func NewFlow[Req, Resp any](name string, opts ...MethodOption) *Flow[Req, Resp] {
	rc, err := CodecFor[Req]()
	if err != nil {
		panic(fmt.Sprintf("hawser: flow %q request: %v", name, err))
	}
	pc, err := CodecFor[Resp]()
	if err != nil {
		panic(fmt.Sprintf("hawser: flow %q response: %v", name, err))
	}
	if name == "" || len(name) > maxFlowName {
		panic(fmt.Sprintf("hawser: flow name %q: 1 to %d bytes", name, maxFlowName))
	}
	var o methodOptions
	for _, f := range opts {
		f(&o)
	}
	return &Flow[Req, Resp]{name: name, req: rc, resp: pc, since: o.since, idempotent: o.idempotent, holds: holdsT[Resp]()}
}

const maxFlowName = 1024

// Name is the flow's name.
func (f *Flow[Req, Resp]) Name() string { return f.name }

// Start starts the flow through c and returns its result.
func (f *Flow[Req, Resp]) Start(ctx context.Context, c Caller, req Req, opts ...CallOption) (Resp, error) {
	var zero Resp
	if err := checkSince(c, f.name, f.since); err != nil {
		return zero, err
	}
	payload := binary.AppendUvarint(make([]byte, 0, 16+len(f.name)), uint64(len(f.name)))
	payload = append(payload, f.name...)
	payload, err := f.req.Append(payload, req)
	if err != nil {
		return zero, fmt.Errorf("hawser: encoding flow %s request: %w", f.name, err)
	}
	if f.idempotent {
		opts = append(opts, IdempotentCall())
	}
	out, err := c.Call(ctx, startFlowID, payload, opts...)
	if err != nil {
		return zero, err
	}
	resp, err := f.resp.Decode(out)
	if err != nil {
		return zero, fmt.Errorf("hawser: decoding flow %s result: %w", f.name, err)
	}
	if f.holds {
		if err := bindHandles(newBinder(ctx, c, f.name), &resp); err != nil {
			return zero, err
		}
	}
	return resp, nil
}

// DecodeRequest and AppendResponse are the server's half of the codecs.
func (f *Flow[Req, Resp]) DecodeRequest(b []byte) (Req, error) { return f.req.Decode(b) }
func (f *Flow[Req, Resp]) AppendResponse(dst []byte, r Resp) ([]byte, error) {
	return f.resp.Append(dst, r)
}

// ErrBadStartFlow: a startFlow request that does not start with a flow
// name.
var ErrBadStartFlow = errors.New("hawser: malformed startFlow request")

// ParseStartFlow splits a startFlow request into the flow's name and its
// encoded argument (which aliases b).
func ParseStartFlow(b []byte) (name string, arg []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n == 0 || n > maxFlowName || n > uint64(len(b)-k) {
		return "", nil, ErrBadStartFlow
	}
	return string(b[k : k+int(n)]), b[k+int(n):], nil
}
