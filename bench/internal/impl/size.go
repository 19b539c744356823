package impl

import "encoding/binary"

// A stream request is the item size, 4 bytes big-endian.
func encodeSize(n int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(n)) }

func decodeSize(b []byte) int {
	if len(b) < 4 {
		return 64
	}
	return min(int(binary.BigEndian.Uint32(b)), 16<<20)
}
