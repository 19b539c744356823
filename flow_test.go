package hawser

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestParseStartFlow(t *testing.T) {
	b := binary.AppendUvarint(nil, 3)
	b = append(append(b, "pay"...), 1, 2)
	name, arg, err := ParseStartFlow(b)
	if err != nil || name != "pay" || !bytes.Equal(arg, []byte{1, 2}) {
		t.Fatalf("%q %v %v", name, arg, err)
	}
	for _, bad := range [][]byte{nil, {0}, {5, 'a'}, {0x80}, binary.AppendUvarint(nil, 1<<40), binary.AppendUvarint(nil, 2000)} {
		if _, _, err := ParseStartFlow(bad); !errors.Is(err, ErrBadStartFlow) {
			t.Errorf("%x: %v", bad, err)
		}
	}
}

// FuzzParseStartFlow: hostile startFlow requests give a name within the
// request or ErrBadStartFlow; never a panic.
func FuzzParseStartFlow(f *testing.F) {
	f.Add(append(binary.AppendUvarint(nil, 3), "pay"...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		name, arg, err := ParseStartFlow(b)
		if err != nil {
			if !errors.Is(err, ErrBadStartFlow) {
				t.Fatal(err)
			}
			return
		}
		if name == "" || len(name)+len(arg) > len(b) {
			t.Fatalf("name %q, %d-byte argument from %d bytes", name, len(arg), len(b))
		}
	})
}
