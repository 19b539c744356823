package conn

import "sync"

// Size-class pools of *[]byte for request copies, compression scratch and
// reassembly. A buffer from getBuf has len 0 and cap of its class; putBuf
// takes back only buffers whose cap is exactly a class.
var bufClasses = [...]int{1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20}

var bufPools [len(bufClasses)]sync.Pool

func classOf(n int) int {
	for i, c := range bufClasses {
		if n <= c {
			return i
		}
	}
	return -1
}

func getBuf(n int) *[]byte {
	i := classOf(n)
	if i < 0 {
		b := make([]byte, 0, n)
		return &b
	}
	if v := bufPools[i].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, bufClasses[i])
	return &b
}

func putBuf(b *[]byte) {
	i := classOf(cap(*b))
	if i >= 0 && bufClasses[i] == cap(*b) {
		bufPools[i].Put(b)
	}
}

// Read buffers hold received plaintext between socket events; a connection
// holds one only while a partial frame is waiting. Frames larger than a
// chunk take a buffer from the size classes.
func getReadBuf(n int) *[]byte {
	var b *[]byte
	if n <= chunkSize {
		b = chunkPool.Get().(*[]byte)
	} else {
		b = getBuf(n)
	}
	*b = (*b)[:cap(*b)]
	return b
}

func putReadBuf(b *[]byte) {
	if cap(*b) == chunkSize {
		chunkPool.Put(b)
		return
	}
	putBuf(b)
}

// appendCapped appends src to dst, growing dst's capacity by doubling but
// never beyond limit (the caller has checked len(dst)+len(src) <= limit),
// so that a message being reassembled holds at most limit bytes of buffer.
func appendCapped(dst, src []byte, limit int) []byte {
	need := len(dst) + len(src)
	if need > cap(dst) {
		nb := make([]byte, len(dst), min(max(2*cap(dst), need), max(limit, need)))
		copy(nb, dst)
		dst = nb
	}
	return append(dst, src...)
}
