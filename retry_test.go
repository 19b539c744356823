package hawser

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/hawser-rpc/hawser/codec"
)

// recorder is a Caller that keeps the options of the last call and
// answers streams from a script of Recv results.
type recorder struct {
	opts   CallOptions
	script []recvResult
}

type recvResult struct {
	b   []byte
	err error
}

func (r *recorder) Call(_ context.Context, _ uint64, req []byte, opts ...CallOption) ([]byte, error) {
	r.opts = Apply(opts)
	return req, nil
}

func (r *recorder) OpenStream(_ context.Context, _ uint64, _ []byte, opts ...CallOption) (RawStream, error) {
	r.opts = Apply(opts)
	return r, nil
}

func (r *recorder) Recv() ([]byte, error) {
	if len(r.script) == 0 {
		return nil, io.EOF
	}
	x := r.script[0]
	r.script = r.script[1:]
	return x.b, x.err
}

func (r *recorder) Close() error { return nil }

// Definitions declared Idempotent or Resubscribable pass the rule to their
// Caller as call options; flows are not idempotent unless declared so.
func TestRetryOptionsReachTheCaller(t *testing.T) {
	ctx := context.Background()
	r := &recorder{}
	plain := NewMethod[[]byte, []byte]("t.plain")
	idem := NewMethod[[]byte, []byte]("t.idem", Idempotent())
	if _, _ = plain.Call(ctx, r, nil); r.opts.Idempotent {
		t.Fatal("a plain method's call is idempotent")
	}
	if _, _ = idem.Call(ctx, r, nil); !r.opts.Idempotent || r.opts.Resubscribable {
		t.Fatalf("Idempotent method: %+v", r.opts)
	}
	st := NewStream[[]byte, []byte]("t.watch", Resubscribable())
	if _, err := st.Open(ctx, r, nil); err != nil || !r.opts.Resubscribable || r.opts.Idempotent {
		t.Fatalf("Resubscribable stream: %+v, %v", r.opts, err)
	}
	if _, err := NewStream[[]byte, []byte]("t.watch2").Open(ctx, r, nil); err != nil || r.opts.Resubscribable {
		t.Fatalf("plain stream: %+v, %v", r.opts, err)
	}
	if _, _ = NewFlow[[]byte, []byte]("pay").Start(ctx, r, nil); r.opts.Idempotent {
		t.Fatal("a flow is idempotent by default")
	}
	if _, _ = NewFlow[[]byte, []byte]("lookup", Idempotent()).Start(ctx, r, nil); !r.opts.Idempotent {
		t.Fatal("an Idempotent flow's start is not")
	}
}

// Apply puts the request ID in the metadata after the caller's entries,
// in a copy: the caller's block is not written to.
func TestRequestIDMetadata(t *testing.T) {
	id := NewRequestID()
	if id.IsZero() || id == NewRequestID() || len(id.String()) != 32 {
		t.Fatalf("NewRequestID %s", id)
	}
	md, err := codec.AppendMetadata(make(codec.Metadata, 0, 64), "trace", []byte("t1"))
	if err != nil {
		t.Fatal(err)
	}
	before := append(codec.Metadata(nil), md...)
	o := Apply([]CallOption{WithRequestID(id), WithMetadata(md)}) // order does not matter
	if err := o.Metadata.Validate(); err != nil {
		t.Fatal(err)
	}
	if v, ok := o.Metadata.Get("trace"); !ok || string(v) != "t1" {
		t.Fatalf("trace entry lost: %q %v", v, ok)
	}
	if v, ok := o.Metadata.Get(RequestIDKey); !ok || !bytes.Equal(v, id[:]) {
		t.Fatalf("request ID %x, %v", v, ok)
	}
	if !bytes.Equal(md, before) || !bytes.Equal(md[:cap(md)][len(md):][:4], make([]byte, 4)) {
		t.Fatal("Apply wrote into the caller's metadata")
	}
	if o := Apply([]CallOption{WithRequestID(RequestID{})}); o.Metadata != nil {
		t.Fatal("the zero ID was sent")
	}
	// A block with no room left for the ID grows past the limit, which
	// the connection refuses, rather than losing the ID.
	big, err := codec.AppendMetadata(nil, "fill!", make([]byte, codec.MaxMetadataSize-3-5-10))
	if err != nil {
		t.Fatal(err)
	}
	if o := Apply([]CallOption{WithMetadata(big), WithRequestID(id)}); len(o.Metadata) <= codec.MaxMetadataSize {
		t.Fatalf("%d bytes: the ID was dropped or fits", len(o.Metadata))
	}
}

// All yields ErrResubscribed and goes on; every other error ends it.
func TestAllContinuesAfterResubscribed(t *testing.T) {
	st := NewStream[[]byte, []byte]("t.all")
	boom := errors.New("boom")
	r := &recorder{script: []recvResult{{b: []byte("a")}, {err: ErrResubscribed}, {b: []byte("b")}, {err: boom}, {b: []byte("never")}}}
	sr, err := st.Open(context.Background(), r, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for it, err := range sr.All() {
		if err != nil {
			got = append(got, "err:"+err.Error())
			continue
		}
		got = append(got, string(it))
	}
	want := []string{"a", "err:" + ErrResubscribed.Error(), "b", "err:boom"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}
