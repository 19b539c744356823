package gossip

import (
	"encoding/binary"
	"errors"
)

// This file is the gossip wire format (gossip/PROTOCOL.md): pure functions
// over bytes, no I/O. Every parse function treats its input as hostile: each
// length is checked against the bytes present before anything is sliced, no
// allocation is sized by a field, and nothing panics. Parsed messages alias
// the input (their []byte fields are valid only as long as the input is).

// protoVersion is the first byte of every plaintext (PROTOCOL.md §2.2).
const protoVersion = 1

// msgType identifies a message.
//
// Only append to this list: the values are part of the protocol.
type msgType uint8

const (
	msgPing         msgType = 1  // probe: answer with an ack
	msgIndirectPing msgType = 2  // probe a target on the requester's behalf
	msgAck          msgType = 3  // answers a ping (or relays an answer)
	msgNack         msgType = 4  // an indirect probe got no answer in time
	msgAlive        msgType = 5  // member is alive at an incarnation (with its meta)
	msgSuspect      msgType = 6  // member is suspected at an incarnation
	msgDead         msgType = 7  // member was declared dead at an incarnation
	msgLeave        msgType = 8  // member left gracefully at an incarnation
	msgUser         msgType = 9  // an application broadcast
	msgPushPull     msgType = 10 // full state (requests and responses only)
	msgPushPullS2   msgType = 11 // full state as one s2 block (requests and responses only)
)

// Limits of the fields (PROTOCOL.md §3).
const (
	// MaxIDLen bounds a node ID in bytes.
	MaxIDLen = 128
	// MaxAddrLen bounds a member address ("host:port") in bytes.
	MaxAddrLen = 255
	// MaxMetaLen bounds a member's metadata in bytes.
	MaxMetaLen = 512
	// maxPushPullMembers bounds the entries of one push-pull state.
	maxPushPullMembers = 1 << 16
	// msgHeaderLen is the type and the u16 length before a packet message.
	msgHeaderLen = 3
)

// Parse errors. A packet or request with one is dropped and counted.
var (
	errTruncated = errors.New("gossip: truncated message")
	errMalformed = errors.New("gossip: malformed message")
)

// --- framing ---------------------------------------------------------------

// beginMsg appends a message header with a zero length; endMsg fills the
// length in once the body is appended.
func beginMsg(dst []byte, t msgType) ([]byte, int) {
	dst = append(dst, byte(t), 0, 0)
	return dst, len(dst)
}

func endMsg(dst []byte, start int) []byte {
	binary.BigEndian.PutUint16(dst[start-2:start], uint16(len(dst)-start))
	return dst
}

// nextMsg splits the first message off a packet's message list.
func nextMsg(b []byte) (t msgType, body, rest []byte, err error) {
	if len(b) < msgHeaderLen {
		return 0, nil, nil, errTruncated
	}
	n := int(binary.BigEndian.Uint16(b[1:3]))
	if len(b)-msgHeaderLen < n {
		return 0, nil, nil, errTruncated
	}
	return msgType(b[0]), b[msgHeaderLen : msgHeaderLen+n], b[msgHeaderLen+n:], nil
}

// --- field helpers -----------------------------------------------------------

func appendStr8(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)))
	return append(dst, s...)
}

func appendBytes16(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(b)))
	return append(dst, b...)
}

// reader consumes fields; the first failure sticks and later reads return
// zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) u8() uint8 {
	if r.err != nil || len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u32() uint32 {
	if r.err != nil || len(r.b) < 4 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// str8 reads a u8-length string of at most max bytes.
func (r *reader) str8(max int) []byte {
	n := int(r.u8())
	if r.err != nil {
		return nil
	}
	if n > max {
		r.err = errMalformed
		return nil
	}
	if len(r.b) < n {
		r.fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// bytes16 reads a u16-length byte string of at most max bytes.
func (r *reader) bytes16(max int) []byte {
	if r.err != nil || len(r.b) < 2 {
		r.fail()
		return nil
	}
	n := int(binary.BigEndian.Uint16(r.b))
	if n > max {
		r.err = errMalformed
		return nil
	}
	if len(r.b)-2 < n {
		r.fail()
		return nil
	}
	v := r.b[2 : 2+n : 2+n]
	r.b = r.b[2+n:]
	return v
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errTruncated
	}
}

// done reports the first error, or errMalformed if bytes are left over.
func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		return errMalformed
	}
	return r.err
}

// --- messages ----------------------------------------------------------------

// ping asks Target to answer with an ack carrying Seq. Target names the node
// the sender means, so a different node now at that address does not answer;
// Source names the sender, so a node that does not know it can tell that
// its member list is incomplete.
type ping struct {
	seq    uint32
	target []byte
	source []byte
}

func appendPing(dst []byte, seq uint32, target, source string) []byte {
	dst, s := beginMsg(dst, msgPing)
	dst = appendPingBody(dst, seq, target, source)
	return endMsg(dst, s)
}

// appendPingBody is a ping's body: in a packet after the message header, in
// a fallback probe request after the request header.
func appendPingBody(dst []byte, seq uint32, target, source string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, seq)
	dst = appendStr8(dst, target)
	return appendStr8(dst, source)
}

func parsePing(b []byte) (ping, error) {
	r := reader{b: b}
	p := ping{seq: r.u32(), target: r.str8(MaxIDLen), source: r.str8(MaxIDLen)}
	if err := r.done(); err != nil {
		return ping{}, err
	}
	if len(p.target) == 0 || len(p.source) == 0 {
		return ping{}, errMalformed
	}
	return p, nil
}

// indirectPing asks the receiver to ping Target at Addr and relay its ack
// (with the requester's Seq) back to the requester; with Nack set, also to
// send a nack if no ack comes in time (Lifeguard).
type indirectPing struct {
	seq    uint32
	nack   bool
	target []byte
	addr   []byte
}

func appendIndirectPing(dst []byte, seq uint32, nack bool, target, addr string) []byte {
	dst, s := beginMsg(dst, msgIndirectPing)
	dst = binary.BigEndian.AppendUint32(dst, seq)
	var flags byte
	if nack {
		flags |= 1
	}
	dst = append(dst, flags)
	dst = appendStr8(dst, target)
	dst = appendStr8(dst, addr)
	return endMsg(dst, s)
}

func parseIndirectPing(b []byte) (indirectPing, error) {
	r := reader{b: b}
	p := indirectPing{seq: r.u32()}
	flags := r.u8()
	p.target = r.str8(MaxIDLen)
	p.addr = r.str8(MaxAddrLen)
	if err := r.done(); err != nil {
		return indirectPing{}, err
	}
	if flags&^1 != 0 || len(p.target) == 0 || len(p.addr) == 0 {
		return indirectPing{}, errMalformed
	}
	p.nack = flags&1 != 0
	return p, nil
}

// appendSeqMsg encodes an ack or a nack: just the sequence number.
func appendSeqMsg(dst []byte, t msgType, seq uint32) []byte {
	dst, s := beginMsg(dst, t)
	dst = binary.BigEndian.AppendUint32(dst, seq)
	return endMsg(dst, s)
}

func parseSeqMsg(b []byte) (uint32, error) {
	r := reader{b: b}
	seq := r.u32()
	return seq, r.done()
}

// alive says member ID is alive at incarnation Inc, reachable at Addr, with
// Meta, speaking protocol version Proto.
type alive struct {
	inc   uint32
	proto uint8
	id    []byte
	addr  []byte
	meta  []byte
}

func appendAlive(dst []byte, inc uint32, proto uint8, id, addr string, meta []byte) []byte {
	dst, s := beginMsg(dst, msgAlive)
	dst = appendAliveBody(dst, inc, proto, id, addr, meta)
	return endMsg(dst, s)
}

func appendAliveBody(dst []byte, inc uint32, proto uint8, id, addr string, meta []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, inc)
	dst = append(dst, proto)
	dst = appendStr8(dst, id)
	dst = appendStr8(dst, addr)
	return appendBytes16(dst, meta)
}

func parseAlive(b []byte) (alive, error) {
	r := reader{b: b}
	a := readAlive(&r)
	if err := r.done(); err != nil {
		return alive{}, err
	}
	return a, checkAlive(a)
}

func readAlive(r *reader) alive {
	return alive{inc: r.u32(), proto: r.u8(), id: r.str8(MaxIDLen), addr: r.str8(MaxAddrLen), meta: r.bytes16(MaxMetaLen)}
}

func checkAlive(a alive) error {
	if len(a.id) == 0 || len(a.addr) == 0 || a.proto == 0 {
		return errMalformed
	}
	return nil
}

// accusation is a suspect or dead message: From accuses ID at Inc.
type accusation struct {
	inc  uint32
	id   []byte
	from []byte
}

func appendAccusation(dst []byte, t msgType, inc uint32, id, from string) []byte {
	dst, s := beginMsg(dst, t)
	dst = binary.BigEndian.AppendUint32(dst, inc)
	dst = appendStr8(dst, id)
	dst = appendStr8(dst, from)
	return endMsg(dst, s)
}

func parseAccusation(b []byte) (accusation, error) {
	r := reader{b: b}
	a := accusation{inc: r.u32(), id: r.str8(MaxIDLen), from: r.str8(MaxIDLen)}
	if err := r.done(); err != nil {
		return accusation{}, err
	}
	if len(a.id) == 0 || len(a.from) == 0 {
		return accusation{}, errMalformed
	}
	return a, nil
}

// leave says member ID left gracefully at incarnation Inc. Only the member
// itself originates it.
type leave struct {
	inc uint32
	id  []byte
}

func appendLeave(dst []byte, inc uint32, id string) []byte {
	dst, s := beginMsg(dst, msgLeave)
	dst = binary.BigEndian.AppendUint32(dst, inc)
	dst = appendStr8(dst, id)
	return endMsg(dst, s)
}

func parseLeave(b []byte) (leave, error) {
	r := reader{b: b}
	l := leave{inc: r.u32(), id: r.str8(MaxIDLen)}
	if err := r.done(); err != nil {
		return leave{}, err
	}
	if len(l.id) == 0 {
		return leave{}, errMalformed
	}
	return l, nil
}

// user is an application broadcast, numbered by its origin so that every
// node delivers it once.
type user struct {
	origin  []byte
	seq     uint64
	payload []byte
}

func appendUser(dst []byte, origin string, seq uint64, payload []byte) []byte {
	dst, s := beginMsg(dst, msgUser)
	dst = appendStr8(dst, origin)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = append(dst, payload...)
	return endMsg(dst, s)
}

// userOverhead is the encoded size of a user message minus its payload.
func userOverhead(origin string) int { return msgHeaderLen + 1 + len(origin) + 8 }

func parseUser(b []byte) (user, error) {
	r := reader{b: b}
	u := user{origin: r.str8(MaxIDLen), seq: r.u64()}
	if r.err != nil {
		return user{}, r.err
	}
	if len(u.origin) == 0 {
		return user{}, errMalformed
	}
	u.payload = r.b[:len(r.b):len(r.b)]
	return u, nil
}

// --- requests (push-pull and the fallback probe, over RPC) -------------------

// A request or response plaintext is the version, one message type and the
// body to the end (no u16 length: a push-pull state may exceed 64 KiB).

func beginRequest(dst []byte, t msgType) []byte { return append(dst, protoVersion, byte(t)) }

func parseRequest(b []byte) (msgType, []byte, error) {
	if len(b) < 2 {
		return 0, nil, errTruncated
	}
	if b[0] == 0 {
		return 0, nil, errMalformed
	}
	return msgType(b[1]), b[2:], nil
}

// Member states on the wire (push-pull entries).
//
// Only append to this list: the values are part of the protocol.
const (
	wireAlive   = 1
	wireSuspect = 2
	wireDead    = 3
	wireLeft    = 4
)

// pushPullHeader opens a push-pull state: the sender's ID, whether the
// sender is joining, and the number of entries that follow.
type pushPullHeader struct {
	join  bool
	from  []byte
	count int
}

func appendPushPullHeader(dst []byte, join bool, from string, count int) []byte {
	var flags byte
	if join {
		flags |= 1
	}
	dst = append(dst, flags)
	dst = appendStr8(dst, from)
	return binary.AppendUvarint(dst, uint64(count))
}

// appendPushPullEntry appends one member: its wire state then an alive body.
func appendPushPullEntry(dst []byte, state uint8, inc uint32, proto uint8, id, addr string, meta []byte) []byte {
	dst = append(dst, state)
	return appendAliveBody(dst, inc, proto, id, addr, meta)
}

// minEntryLen is the smallest encoded entry: state, inc, proto, 1-byte ID,
// 1-byte address, empty meta.
const minEntryLen = 1 + 4 + 1 + 2 + 2 + 2

// parsePushPull checks a push-pull body and calls visit for each entry; the
// entries are only visited once the whole body is known to be well formed,
// so a malformed state is never half applied.
func parsePushPull(b []byte, visit func(h pushPullHeader, state uint8, a alive)) (pushPullHeader, error) {
	r := reader{b: b}
	flags := r.u8()
	h := pushPullHeader{join: flags&1 != 0, from: r.str8(MaxIDLen)}
	count := r.uvarint()
	if r.err != nil {
		return pushPullHeader{}, r.err
	}
	if flags&^1 != 0 || len(h.from) == 0 || count > maxPushPullMembers || count > uint64(len(r.b)/minEntryLen) {
		return pushPullHeader{}, errMalformed
	}
	h.count = int(count)
	body := r.b
	for pass := 0; pass < 2; pass++ {
		r = reader{b: body}
		for i := 0; i < h.count; i++ {
			st := r.u8()
			a := readAlive(&r)
			if r.err != nil {
				return pushPullHeader{}, r.err
			}
			if st < wireAlive || st > wireLeft || checkAlive(a) != nil {
				return pushPullHeader{}, errMalformed
			}
			if pass == 1 && visit != nil {
				visit(h, st, a)
			}
		}
		if err := r.done(); err != nil {
			return pushPullHeader{}, err
		}
	}
	return h, nil
}
