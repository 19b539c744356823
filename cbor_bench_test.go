package hawser

import (
	"encoding/binary"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
)

// benchAccount is a typical record: the CBOR codec's side of BenchmarkCBOR.
type benchAccount struct {
	ID      uint64
	Name    string
	Balance int64
	Tags    []string
	Created time.Time
	Flags   map[string]bool
	Owner   benchOwner
}

type benchOwner struct {
	Name    string
	Address benchAddress
}

type benchAddress struct {
	City string
	Zip  uint32
}

// benchAccountAny is benchAccount with an interface field (left nil), so
// its decoding runs the allowlist scan first.
type benchAccountAny struct {
	benchAccount
	Extra any
}

// binAccount is the same record with a hand-written binary encoding, as a
// careful author of an encoding.BinaryAppender would write it: uvarint
// lengths and counts, varints, fixed-width IDs, the time as Unix
// nanoseconds in UTC, map keys sorted; hostile input is refused, never
// trusted for a size. A defined type, so that the CBOR codec of
// benchAccount cannot use its methods.
type binAccount benchAccount

var errBinAccount = errors.New("binAccount: malformed")

func (a *binAccount) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(b, a.ID)
	b = appendString(b, a.Name)
	b = binary.AppendVarint(b, a.Balance)
	b = binary.AppendUvarint(b, uint64(len(a.Tags)))
	for _, t := range a.Tags {
		b = appendString(b, t)
	}
	b = binary.AppendVarint(b, a.Created.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(a.Flags)))
	keys := make([]string, 0, 8)
	for k := range a.Flags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendString(b, k)
		if a.Flags[k] {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	b = appendString(b, a.Owner.Name)
	b = appendString(b, a.Owner.Address.City)
	return binary.AppendUvarint(b, uint64(a.Owner.Address.Zip)), nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// binReader reads binAccount fields; the first error sticks.
type binReader struct {
	b   []byte
	err error
}

func (r *binReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// count reads a count of elements that take at least one byte each.
func (r *binReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *binReader) fail() { r.err, r.b = errBinAccount, nil }

func (a *binAccount) UnmarshalBinary(b []byte) error {
	if len(b) < 8 {
		return errBinAccount
	}
	a.ID = binary.BigEndian.Uint64(b)
	r := binReader{b: b[8:]}
	a.Name = r.string()
	a.Balance = r.varint()
	if n := r.count(); n > 0 {
		a.Tags = make([]string, n)
		for i := range a.Tags {
			a.Tags[i] = r.string()
		}
	}
	a.Created = time.Unix(0, r.varint()).UTC()
	if n := r.count(); n > 0 {
		a.Flags = make(map[string]bool, n)
		for range n {
			k := r.string()
			if len(r.b) == 0 {
				r.fail()
				break
			}
			a.Flags[k] = r.b[0] == 1
			r.b = r.b[1:]
		}
	}
	a.Owner.Name = r.string()
	a.Owner.Address.City = r.string()
	zip := r.uvarint()
	if zip > 1<<32-1 || len(r.b) != 0 {
		r.fail()
	}
	a.Owner.Address.Zip = uint32(zip)
	return r.err
}

func sampleAccount() benchAccount {
	return benchAccount{
		ID:      0x1234_5678_9abc,
		Name:    "Harbour Supplies AS",
		Balance: -123_456_789,
		Tags:    []string{"wholesale", "priority", "eu"},
		Created: time.Date(2023, 11, 14, 9, 30, 0, 123_000_000, time.UTC),
		Flags:   map[string]bool{"active": true, "frozen": false, "vat": true},
		Owner:   benchOwner{Name: "Kari Nordmann", Address: benchAddress{City: "Ålesund", Zip: 6004}},
	}
}

// The two codecs agree on the record, so the benchmark compares like with
// like.
func TestBenchAccountCodecsAgree(t *testing.T) {
	in := sampleAccount()
	bc, err := CodecFor[*binAccount]()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := bc.(Binary[*binAccount]); !ok {
		t.Fatalf("CodecFor picked %T", bc)
	}
	b, err := bc.Append(nil, (*binAccount)(&in))
	if err != nil {
		t.Fatal(err)
	}
	got, err := bc.Decode(b)
	if err != nil || !reflect.DeepEqual(benchAccount(*got), in) {
		t.Fatalf("binary: %+v, %v", got, err)
	}
	for i := range len(b) {
		if _, err := bc.Decode(b[:i]); err == nil {
			t.Fatalf("binary: a prefix of %d bytes decoded", i)
		}
	}
	cc := NewCBOR[benchAccount]()
	c, err := cc.Append(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	back, err := cc.Decode(c)
	if err != nil || !reflect.DeepEqual(back, in) {
		t.Fatalf("cbor: %+v, %v", back, err)
	}
	t.Logf("binary %d bytes, CBOR %d bytes", len(b), len(c))
}

// BenchmarkCBOR: encoding and decoding one account record with the CBOR
// codec, against a hand-written encoding.BinaryAppender and
// BinaryUnmarshaler of the same record, and the CBOR encoding and decoding
// of the record with an (empty) interface field, which adds the allowlist
// check of Append and the scan of Decode.
// SetBytes is each encoding's size, so MB/s compare the codecs' speed over
// their own bytes; ns/op compares them per record.
func BenchmarkCBOR(b *testing.B) {
	acct := sampleAccount()
	cc := NewCBOR[benchAccount]()
	ca := NewCBOR[benchAccountAny]()
	bc, err := CodecFor[*binAccount]()
	if err != nil {
		b.Fatal(err)
	}
	cborBytes, _ := cc.Append(nil, acct)
	anyBytes, _ := ca.Append(nil, benchAccountAny{benchAccount: acct})
	binBytes, _ := bc.Append(nil, (*binAccount)(&acct))

	b.Run("encode/cbor", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(cborBytes)))
		buf := make([]byte, 0, 256)
		for b.Loop() {
			buf, _ = cc.Append(buf[:0], acct)
		}
	})
	b.Run("encode/binary", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(binBytes)))
		buf := make([]byte, 0, 256)
		for b.Loop() {
			buf, _ = bc.Append(buf[:0], (*binAccount)(&acct))
		}
	})
	b.Run("encode/cbor-checked", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(anyBytes)))
		buf := make([]byte, 0, 256)
		v := benchAccountAny{benchAccount: acct}
		for b.Loop() {
			buf, _ = ca.Append(buf[:0], v)
		}
	})
	b.Run("decode/cbor", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(cborBytes)))
		for b.Loop() {
			if _, err := cc.Decode(cborBytes); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/cbor-scanned", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(anyBytes)))
		for b.Loop() {
			if _, err := ca.Decode(anyBytes); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/binary", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(binBytes)))
		for b.Loop() {
			if _, err := bc.Decode(binBytes); err != nil {
				b.Fatal(err)
			}
		}
	})
}
