package hawser

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// FuzzCBORDecode feeds hostile bytes to the CBOR codec of testRecord, a
// typical message with interface fields (a testShape, []testShape,
// map[string]testShape, an any) and a self-encoding handle. Decode must
// not panic and must fail only with a *DecodeError; when hawser's scan
// refuses the input, with the scan's own typed error (a *LimitError, a
// *TypeNotAllowedError, a syntax error or io.ErrUnexpectedEOF). What
// decodes must re-encode (so no cbor.Tag or unregistered type got into an
// interface field: Append refuses those), and decoding that encoding must
// give the same bytes again.
//
// The seeds are committed under testdata/fuzz/FuzzCBORDecode/seed-*, built
// by cborSeeds; TestCBORSeedCorpus keeps them in step. Regenerate with
//
//	go test -run TestCBORSeedCorpus -update-seeds .
//
// Other files there are inputs found by fuzzing, kept as they are.
func FuzzCBORDecode(f *testing.F) {
	c := NewCBOR[testRecord]()
	if c.plan == nil {
		f.Fatal("testRecord has interface fields but no plan")
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		scanErr := scanCBOR(b, c.plan, c.lim, typeTable())
		v, err := c.Decode(b)
		if err != nil {
			checkDecodeError(t, err, scanErr)
			return
		}
		if scanErr != nil {
			t.Fatalf("decoded what the scan refused (%v)", scanErr)
		}
		b1, err := c.Append(nil, v)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", v, err)
		}
		v2, err := c.Decode(b1)
		if err != nil {
			t.Fatalf("re-encoded %x does not decode: %v", b1, err)
		}
		b2, err := c.Append(nil, v2)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("not a fixed point: %x then %x (%v)", b1, b2, err)
		}
	})
}

// checkDecodeError fails unless err is a *DecodeError that does not match
// io.EOF and, if the scan failed with scanErr, one of the scan's typed
// errors is err's cause. (Past the scan, fxamacker's causes are its own,
// not all of them typed.)
func checkDecodeError(t *testing.T, err, scanErr error) {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) || !errors.Is(err, ErrDecode) || de.Err == nil {
		t.Fatalf("not a *DecodeError: %T %v", err, err)
	}
	if errors.Is(err, io.EOF) {
		t.Fatalf("%v matches io.EOF", err)
	}
	if scanErr == nil {
		return
	}
	if !reflect.DeepEqual(de.Err, scanErr) {
		t.Fatalf("the scan failed with %v, Decode with %v", scanErr, err)
	}
	var (
		limit  *LimitError
		allow  *TypeNotAllowedError
		syntax *syntaxError
	)
	if !errors.As(scanErr, &limit) && !errors.As(scanErr, &allow) && !errors.As(scanErr, &syntax) && !errors.Is(scanErr, io.ErrUnexpectedEOF) {
		t.Fatalf("untyped scan error %T: %v", scanErr, scanErr)
	}
}

var updateCBORSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpus files (seed-*) under testdata/fuzz")

type cborSeed struct {
	name string
	b    []byte
}

// cborSeeds are FuzzCBORDecode's seeds: valid records from Append, and the
// hostile shapes of TestCBORHostileInputs and TestCBORAllowlistRefusals.
func cborSeeds(t testing.TB) []cborSeed {
	c := NewCBOR[testRecord]()
	circle := map[string]float64{"R": 1}
	sorted := func(v any) []byte { // hostile inputs, but deterministic bytes
		b, err := typeTable().enc.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	deep := func(n int) []byte { // {"Extra": [[[...]]]}
		b := sorted(map[string]any{"Extra": nil})
		b = b[:len(b)-1]
		for range n {
			b = append(b, 0x81)
		}
		return append(b, 0)
	}
	return []cborSeed{
		{"record", mustAppend(t, c, sampleRecord())},
		{"record-zero", mustAppend(t, c, testRecord{})},
		{"record-shapes", mustAppend(t, c, testRecord{
			Shape:  &testSquare{Side: 2, Label: []any{"x", &testCircle{R: 1}}},
			Shapes: []testShape{&testCircle{}, nil},
			ByName: map[string]testShape{"": &testSquare{}},
			Extra:  map[string]any{"t": time.Unix(1, 2).UTC(), "n": nil, "f": 1.5, "neg": -5},
		})},
		{"unregistered-tag", sorted(map[string]any{"Shape": cbor.Tag{Number: tagStranger, Content: map[string]int{"X": 1}}})},
		{"registered-not-a-shape", sorted(map[string]any{"Shape": cbor.Tag{Number: tagNotShape, Content: map[string]string{"N": "x"}}})},
		{"untagged-shape", sorted(map[string]any{"Shape": circle})},
		{"nested-tags", sorted(map[string]any{"Shapes": []any{cbor.Tag{Number: tagCircle, Content: cbor.Tag{Number: tagSquare, Content: circle}}}})},
		{"any-unregistered-deep", sorted(map[string]any{"Extra": map[string]any{"a": []any{cbor.Tag{Number: 21, Content: []byte{1}}}}})},
		{"any-bignum-time", sorted(map[string]any{"Extra": []any{cbor.Tag{Number: 2, Content: []byte{1, 0, 0, 0, 0, 0, 0, 0, 0}}, cbor.Tag{Number: 0, Content: "2024-01-02T03:04:05Z"}}})},
		{"handle-wrong-tag", sorted(map[string]any{"Handle": cbor.Tag{Number: tagHandle + 1, Content: 1}})},
		{"depth-32", deep(31)},
		{"depth-33", deep(32)},
		{"array-claim", []byte{0xa1, 0x64, 'T', 'a', 'g', 's', 0x9b, 0, 0, 0, 0, 0x80, 0, 0, 0}},
		{"string-claim", []byte{0xa1, 0x64, 'N', 'a', 'm', 'e', 0x7b, 0x40, 0, 0, 0, 0, 0, 0, 0}},
		{"indefinite", []byte{0xa1, 0x64, 'T', 'a', 'g', 's', 0x9f, 0xff}},
		{"duplicate-key", []byte{0xa2, 0x62, 'I', 'D', 0x01, 0x62, 'I', 'D', 0x02}},
		{"invalid-utf8", []byte{0xa1, 0x64, 'N', 'a', 'm', 'e', 0x62, 0xc3, 0x28}},
		{"trailing", append(mustAppend(t, c, testRecord{ID: 1}), 0)},
		{"array-as-field-name", []byte{0xa1, 0x80, 0x01}},
	}
}

// TestCBORSeedCorpus keeps testdata/fuzz/FuzzCBORDecode/seed-* equal to
// cborSeeds, in the "go test fuzz v1" format.
func TestCBORSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzCBORDecode")
	want := map[string][]byte{}
	for _, s := range cborSeeds(t) {
		if _, dup := want["seed-"+s.name]; dup {
			t.Fatalf("seed %q twice", s.name)
		}
		want["seed-"+s.name] = fmt.Appendf([]byte("go test fuzz v1\n"), "[]byte(%q)\n", s.b)
	}
	have, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
	if *updateCBORSeeds {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range have {
			if _, ok := want[filepath.Base(p)]; !ok {
				_ = os.Remove(p)
			}
		}
		for name, b := range want {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	for _, p := range have {
		if _, ok := want[filepath.Base(p)]; !ok {
			t.Errorf("%s is no longer built; run go test -run TestCBORSeedCorpus -update-seeds .", p)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want[name]) {
			t.Errorf("%s/%s is missing or stale; run go test -run TestCBORSeedCorpus -update-seeds .", dir, name)
		}
	}
}
