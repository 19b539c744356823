package conn

import "sync"

// chunkSize is the size of the pooled buffers that carry queued plaintext
// and ciphertext. DESIGN.md §4: growing one big []byte cost 44% of CPU on
// 1 MiB frames; fixed pooled chunks do not.
const chunkSize = 64 << 10

var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, 0, chunkSize)
	return &b
}}

// chunks is a byte queue made of pooled fixed-size chunks. Bytes are
// appended at the end; a frame may straddle chunks (the stream under it is a
// byte stream), and cont records where it does, so that a partial take never
// stops in the middle of a frame: another queue's frames may be written
// next (urgent ones overtaking bulk ones, PROTOCOL.md §9). Not safe for
// concurrent use: the owner holds the lock or is the loop.
type chunks struct {
	bufs []*[]byte
	cont []bool // cont[i]: the frame at the end of bufs[i] continues in bufs[i+1]
	size int
	open bool // bytes of the frame being written are in the last chunk
}

// write appends p, as part of the frame being written (see endFrame).
func (q *chunks) write(p []byte) {
	for len(p) > 0 {
		k := len(q.bufs)
		if k == 0 || len(*q.bufs[k-1]) == cap(*q.bufs[k-1]) {
			if k > 0 && q.open {
				q.cont[k-1] = true
			}
			b := chunkPool.Get().(*[]byte)
			*b = (*b)[:0]
			q.bufs = append(q.bufs, b)
			q.cont = append(q.cont, false)
			k++
		}
		last := q.bufs[k-1]
		n := copy((*last)[len(*last):cap(*last)], p)
		*last = (*last)[:len(*last)+n]
		p = p[n:]
		q.size += n
		q.open = true
	}
}

// endFrame marks the end of a frame: the next write starts a new one.
func (q *chunks) endFrame() { q.open = false }

// takeInto moves whole chunks from the front of q to the end of dst until
// at least limit bytes moved (and the last chunk moved ends a frame) or q
// is empty, and returns the bytes moved.
func (q *chunks) takeInto(dst *chunks, limit int) int {
	moved, i := 0, 0
	for ; i < len(q.bufs) && (moved < limit || (i > 0 && q.cont[i-1])); i++ {
		moved += len(*q.bufs[i])
		dst.bufs = append(dst.bufs, q.bufs[i])
		dst.cont = append(dst.cont, q.cont[i])
	}
	n := copy(q.bufs, q.bufs[i:])
	clear(q.bufs[n:])
	q.bufs = q.bufs[:n]
	copy(q.cont, q.cont[i:])
	q.cont = q.cont[:n]
	q.size -= moved
	dst.size += moved
	return moved
}

// release returns every chunk to the pool and empties q.
func (q *chunks) release() {
	for i, b := range q.bufs {
		chunkPool.Put(b)
		q.bufs[i] = nil
	}
	q.bufs = q.bufs[:0]
	q.cont = q.cont[:0]
	q.size = 0
	q.open = false
}

// discard drops the first n bytes of q (n <= q.size), returning emptied
// chunks to the pool. Frame marks are not kept: it is for ciphertext.
func (q *chunks) discard(n int) {
	i := 0
	for ; i < len(q.bufs) && n >= len(*q.bufs[i]); i++ {
		n -= len(*q.bufs[i])
		q.size -= len(*q.bufs[i])
		chunkPool.Put(q.bufs[i])
	}
	k := copy(q.bufs, q.bufs[i:])
	clear(q.bufs[k:])
	q.bufs = q.bufs[:k]
	copy(q.cont, q.cont[i:])
	q.cont = q.cont[:k]
	if n > 0 && k > 0 {
		b := q.bufs[0]
		rest := copy(*b, (*b)[n:])
		*b = (*b)[:rest]
		q.size -= n
	}
}

// shrink lets go of q's slices when q is empty (an idle connection): they
// keep the capacity of the largest batch otherwise.
func (q *chunks) shrink() {
	if len(q.bufs) == 0 {
		q.bufs, q.cont = nil, nil
	}
}
