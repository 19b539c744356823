package codec

import "github.com/klauspost/compress/s2"

// DefaultCompressThreshold is the payload size at and above which a sender
// tries compression when both sides announce FeatureS2.
const DefaultCompressThreshold = 1 << 10

// MaxCompressedLen is the largest output Compress can produce for n bytes of
// input, or a negative number if n is too large to compress.
func MaxCompressedLen(n int) int { return s2.MaxEncodedLen(n) }

// Compress appends the s2 block encoding of src to dst[:0]'s backing array
// and reports whether it is smaller than src; if not, the caller sends src
// as it is. dst should have capacity MaxCompressedLen(len(src)) to avoid an
// allocation.
func Compress(dst, src []byte) ([]byte, bool) {
	out := s2.Encode(dst[:cap(dst)], src)
	return out, len(out) < len(src)
}

// DecompressedLen returns the size src decodes to, from the s2 block header,
// without decoding. It fails with ErrDecompressTooBig above limit, so a
// receiver can refuse a decompression bomb before allocating.
func DecompressedLen(src []byte, limit int) (int, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return 0, ErrBadCompression
	}
	if n > limit {
		return 0, ErrDecompressTooBig
	}
	return n, nil
}

// Decompress decodes the s2 block src into dst, which must have capacity for
// DecompressedLen(src, limit) bytes; it refuses, before decoding, any block
// that would exceed limit.
func Decompress(dst, src []byte, limit int) ([]byte, error) {
	n, err := DecompressedLen(src, limit)
	if err != nil {
		return nil, err
	}
	if cap(dst) < n {
		return nil, ErrBadCompression
	}
	out, err := s2.Decode(dst[:n], src)
	if err != nil || len(out) != n {
		return nil, ErrBadCompression
	}
	return out, nil
}
