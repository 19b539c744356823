package hawser_test

import (
	"errors"
	"fmt"
	"math"

	"github.com/hawser-rpc/hawser"
)

// Shape is an interface whose implementations travel inside messages.
type Shape interface{ Area() float64 }

// Circle implements Shape on its pointer, so a Shape field round-trips as
// the *Circle it held.
type Circle struct{ R float64 }

func (c *Circle) Area() float64 { return math.Pi * c.R * c.R }

// Drawing is a message with interface fields.
type Drawing struct {
	Title  string
	Shapes []Shape
	Note   any
}

// Circle may be built from a peer's bytes; nothing else may be a Shape.
// Both sides register it, under the same tag, at init.
func init() { hawser.RegisterType[Circle](0x10000) }

// Drawings decoded from the network take registered shapes only.
func ExampleRegisterType() {
	codec := hawser.NewCBOR[Drawing]() // what CodecFor and NewMethod pick for Drawing
	b, err := codec.Append(nil, Drawing{Title: "sun", Shapes: []Shape{&Circle{R: 1}}, Note: []any{"plain", 7}})
	if err != nil {
		panic(err)
	}
	d, err := codec.Decode(b)
	fmt.Printf("%s %T %.2f %v %v\n", d.Title, d.Shapes[0], d.Shapes[0].Area(), d.Note, err)

	// {"Shapes": [65537({})]}: a peer's shape under a tag nobody registered.
	hostile := []byte{0xa1, 0x66, 'S', 'h', 'a', 'p', 'e', 's', 0x81, 0xda, 0x00, 0x01, 0x00, 0x01, 0xa0}
	_, err = codec.Decode(hostile)
	var refused *hawser.TypeNotAllowedError
	if errors.As(err, &refused) {
		fmt.Println(refused.Tag, refused.Interface, errors.Is(err, hawser.ErrTypeNotAllowed), errors.Is(err, hawser.ErrDecode))
	}
	// Output:
	// sun *hawser_test.Circle 3.14 [plain 7] <nil>
	// 65537 hawser_test.Shape true true
}

// Limits other than the defaults, for a method whose requests are small.
func ExampleNewCBORWith() {
	codec, err := hawser.NewCBORWith[[]string](hawser.CBOROptions{MaxSize: 4096, MaxArrayElements: 100})
	if err != nil {
		panic(err)
	}
	tooMany := make([]string, 101)
	b, _ := codec.Append(nil, tooMany) // Append does not apply the decoding limits
	_, err = codec.Decode(b)
	var limit *hawser.LimitError
	fmt.Println(errors.As(err, &limit), limit.Limit, limit.Max)

	put := hawser.NewMethodCodec("names.Put", codec, hawser.Raw{}) // requests decoded with these limits
	fmt.Println(put.Name())
	// Output:
	// true MaxArrayElements 100
	// names.Put
}
