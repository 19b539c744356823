package codec_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/hawser-rpc/hawser/codec"
)

// Encode a CALL frame and parse it back; a strict prefix is "need more".
func Example() {
	body := codec.AppendCallPrefix(nil, codec.MethodID("kv.Get"), nil)
	body = append(body, "key"...)
	frame := codec.Append(nil, codec.Frame{
		Header: codec.Header{Kind: codec.KindCall, ID: 1, Arg: codec.DeadlineArg(50 * time.Millisecond)},
		Body:   body,
	})

	_, _, err := codec.Parse(frame[:10], codec.DefaultMaxFrameSize)
	fmt.Println(errors.Is(err, codec.ErrNeedMore))

	f, n, err := codec.Parse(frame, codec.DefaultMaxFrameSize)
	call, _ := codec.ParseCall(f.Header, f.Body)
	fmt.Println(f.Kind, f.ID, codec.ArgDeadline(f.Arg), n == len(frame), err)
	fmt.Println(call.Method == codec.MethodID("kv.Get"), string(call.Payload))
	// Output:
	// true
	// CALL 1 50ms true <nil>
	// true key
}
