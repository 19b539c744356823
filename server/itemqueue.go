package server

import "encoding/binary"

// itemQueue holds the items buffered for one subscription back to back in
// chunks (uvarint(len) || bytes each), so that buffering costs an
// allocation per chunk rather than per item. Chunks start at minChunk and
// double up to maxChunk (an item larger than that gets a chunk of its
// own size); the last chunk is kept when it empties, for reuse. Its
// owner charges every chunk's capacity to the connection's buffer when it
// is made and releases it when it is dropped.
type itemQueue struct {
	chunks [][]byte // chunks[0][off:] is unread
	off    int
	held   int64 // capacity of the chunks
}

const (
	minChunk = 1 << 10
	maxChunk = 32 << 10
)

// room reports the chunk size a push of item needs, or 0 if it fits in
// the last chunk.
func (q *itemQueue) room(item []byte) int {
	need := binary.MaxVarintLen64 + len(item)
	if n := len(q.chunks); n > 0 && cap(q.chunks[n-1])-len(q.chunks[n-1]) >= need {
		return 0
	}
	size := minChunk
	if n := len(q.chunks); n > 0 {
		size = min(2*cap(q.chunks[n-1]), maxChunk)
	}
	return max(size, need)
}

// push appends item, in a new chunk of size if size > 0 (from room).
func (q *itemQueue) push(item []byte, size int) {
	if size > 0 {
		q.chunks = append(q.chunks, make([]byte, 0, size))
		q.held += int64(size)
	}
	last := len(q.chunks) - 1
	c := binary.AppendUvarint(q.chunks[last], uint64(len(item)))
	q.chunks[last] = append(c, item...)
}

// pop returns the next item, which aliases its chunk: valid until the
// next pop. freed is the capacity of the chunks dropped.
func (q *itemQueue) pop() (item []byte, ok bool, freed int64) {
	for len(q.chunks) > 0 {
		c := q.chunks[0]
		if q.off < len(c) {
			n, k := binary.Uvarint(c[q.off:])
			start := q.off + k
			q.off = start + int(n)
			return c[start:q.off:q.off], true, freed
		}
		if len(q.chunks) == 1 {
			q.chunks[0], q.off = c[:0], 0 // reuse the empty chunk
			return nil, false, freed
		}
		freed += int64(cap(c))
		q.held -= int64(cap(c))
		q.chunks[0] = nil
		q.chunks, q.off = q.chunks[1:], 0
	}
	return nil, false, freed
}

// empty reports whether no item is unread.
func (q *itemQueue) empty() bool {
	return len(q.chunks) == 0 || (len(q.chunks) == 1 && q.off == len(q.chunks[0]))
}

// reset drops every chunk and returns their capacity.
func (q *itemQueue) reset() int64 {
	h := q.held
	*q = itemQueue{}
	return h
}
