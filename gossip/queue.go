package gossip

import (
	"math"
	"slices"
)

// bcast is one message waiting to be piggybacked.
type bcast struct {
	key       string // member ID, "" for user messages (never replaced)
	msg       []byte // one encoded message (header and body)
	transmits int
	order     uint64 // insertion order: newer first among equal transmits
	first     bool   // this node's own alive: ahead of everything else
}

// queue holds the messages to disseminate (memberlist's
// TransmitLimitedQueue): a newer message about a member replaces the queued
// one; each is sent at most limit times; the least-sent go first, except
// this node's claims about itself (its join, a refutation, new metadata),
// which go before anything else: they are the news only it can start.
// Guarded by Gossip.mu.
type queue struct {
	items []*bcast
	byKey map[string]*bcast
	next  uint64
	users int // user messages queued
}

// maxQueuedUser bounds the user broadcasts waiting to be sent.
const maxQueuedUser = 1024

// push queues msg (owned by the queue from now on); first puts it ahead of
// everything else.
func (q *queue) push(key string, msg []byte, first bool) {
	if q.byKey == nil {
		q.byKey = map[string]*bcast{}
	}
	q.next++
	if key != "" {
		if b := q.byKey[key]; b != nil {
			b.msg, b.transmits, b.order, b.first = msg, 0, q.next, first
			return
		}
	} else {
		q.users++
	}
	b := &bcast{key: key, msg: msg, order: q.next, first: first}
	q.items = append(q.items, b)
	if key != "" {
		q.byKey[key] = b
	}
}

// drop removes the queued message about a member, if any.
func (q *queue) drop(key string) {
	b := q.byKey[key]
	if b == nil {
		return
	}
	delete(q.byKey, key)
	q.items = slices.DeleteFunc(q.items, func(x *bcast) bool { return x == b })
}

func (q *queue) len() int { return len(q.items) }

// fill appends to dst the messages that fit in budget bytes, least-sent
// first, counts a transmission for each, and retires those sent limit
// times.
func (q *queue) fill(dst []byte, budget, limit int) []byte {
	if len(q.items) == 0 || budget <= 0 {
		return dst
	}
	slices.SortFunc(q.items, func(a, b *bcast) int {
		if a.first != b.first {
			if a.first {
				return -1
			}
			return 1
		}
		if a.transmits != b.transmits {
			return a.transmits - b.transmits
		}
		if a.order > b.order {
			return -1
		}
		return 1
	})
	retired := false
	for _, b := range q.items {
		if len(b.msg) > budget {
			if budget < msgHeaderLen+8 {
				break // nothing else can fit
			}
			continue
		}
		dst = append(dst, b.msg...)
		budget -= len(b.msg)
		b.transmits++
		if b.transmits >= limit {
			retired = true
		}
	}
	if retired {
		q.items = slices.DeleteFunc(q.items, func(b *bcast) bool {
			if b.transmits < limit {
				return false
			}
			if b.key != "" {
				delete(q.byKey, b.key)
			} else {
				q.users--
			}
			return true
		})
	}
	return dst
}

// retransmitLimit is how often one message is sent: mult*ceil(log10(n+1)).
func retransmitLimit(mult, n int) int {
	return mult * int(math.Ceil(math.Log10(float64(n+1))))
}
