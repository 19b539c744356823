package conn

import (
	"bytes"
	"testing"
)

// A partial take never ends in the middle of a frame, wherever frames
// straddle chunks.
func TestChunksTakeStopsAtFrameBoundary(t *testing.T) {
	for _, frameLen := range []int{100, chunkSize - 7, chunkSize, chunkSize + 1, 3*chunkSize + 5} {
		var q, dst chunks
		var want []byte
		var ends []int // frame end offsets in the stream
		for f := range 5 {
			frame := bytes.Repeat([]byte{byte(f + 1)}, frameLen)
			q.write(frame[:7])
			q.write(frame[7:])
			q.endFrame()
			want = append(want, frame...)
			ends = append(ends, len(want))
		}
		var got []byte
		for q.size > 0 {
			q.takeInto(&dst, 1) // the smallest budget: one chunk, then to a frame end
			for _, b := range dst.bufs {
				got = append(got, *b...)
			}
			atEnd := false
			for _, e := range ends {
				if e == len(got) {
					atEnd = true
				}
			}
			if !atEnd {
				t.Fatalf("frame %d bytes: a take stopped at %d, inside a frame", frameLen, len(got))
			}
			dst.release()
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d bytes: stream differs", frameLen)
		}
	}
}
