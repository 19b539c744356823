package raft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	hraft "github.com/hashicorp/raft"
)

// This file is the binary codec of the raft messages (PROTOCOL.md,
// "Messages"): pure functions over bytes, no I/O, no reflection.
//
// The append functions append one message to dst and return the extended
// slice. The decode functions treat their input as hostile: every length and
// count is checked against the bytes present before anything is sliced or
// allocated, nothing panics, and every failure wraps ErrMalformed with the
// message, the field and the offset in its text. Every message has exactly one
// encoding (minimal varints, bools 0 or 1, one encoding of the zero time), so
// decoding and re-encoding gives back the input.
//
// Lifetime: the []byte fields of a decoded message alias the input b (with
// their capacity capped, so appending to one never writes into b). They are
// valid as long as b is: the transport keeps a request's buffer for as long as
// raft may hold the message and never recycles it.

// wireVersion is the first byte of every request and response body. A decoder
// refuses any other value.
const wireVersion = 1

// Decoding limits (PROTOCOL.md, "Decoding rules and limits").
const (
	// minEntryLen is the smallest encoding of one log entry: Index, Term,
	// Type, Data, Extensions and AppendedAt, one byte each. An entry count is
	// checked against it before the entries are allocated.
	minEntryLen = 6
	// maxErrorMessage bounds the message of an error reply in bytes;
	// appendError truncates a longer one.
	maxErrorMessage = 4096
	// maxVersionField bounds ProtocolVersion and SnapshotVersion (Go ints) on
	// decode, so a value fits an int on every platform.
	maxVersionField = math.MaxInt32
)

// zeroUnix is the Unix time of time.Time{}, the one instant whose explicit
// encoding is refused (the zero time has its own marker).
var zeroUnix = time.Time{}.Unix()

// ErrMalformed is wrapped by every decode failure: the bytes are not a message
// of the expected kind. The error text names the message, the field and the
// byte offset.
var ErrMalformed = errors.New("raft: malformed message")

// ErrorCode says why a peer's transport answered a raft RPC with an error
// (PROTOCOL.md, "Reply envelope").
//
// Only append to this list: the values are part of the protocol.
type ErrorCode uint8

const (
	// CodeRaft: raft's handler responded with an error (RPCResponse.Error);
	// Message is its text.
	CodeRaft ErrorCode = 1
	// CodeShutdown: the receiving transport is closed; the RPC was refused,
	// never delivered to raft.
	CodeShutdown ErrorCode = 2
	// CodeSnapshot: snapshot stream error (unknown session, out-of-order or
	// excess bytes, truncated).
	CodeSnapshot ErrorCode = 3
	// CodeBadRequest: the request did not decode.
	CodeBadRequest ErrorCode = 4
	// CodeTimeout: raft did not take or answer the RPC in time.
	CodeTimeout ErrorCode = 5
)

func (c ErrorCode) String() string {
	switch c {
	case CodeRaft:
		return "raft error"
	case CodeShutdown:
		return "shutdown"
	case CodeSnapshot:
		return "snapshot error"
	case CodeBadRequest:
		return "bad request"
	case CodeTimeout:
		return "timeout"
	}
	return "code " + strconv.Itoa(int(c))
}

// RemoteError is an error the peer's transport returned in a reply envelope.
// A code this version does not know (from a newer peer) is kept as it is.
type RemoteError struct {
	Code    ErrorCode
	Message string
}

// Error gives "raft: remote <code name>: <message>".
func (e *RemoteError) Error() string {
	if e.Message == "" {
		return "raft: remote " + e.Code.String()
	}
	return "raft: remote " + e.Code.String() + ": " + e.Message
}

// Is makes a CodeShutdown error match hraft.ErrTransportShutdown, which is
// what raft expects of a transport that is shutting down.
func (e *RemoteError) Is(target error) bool {
	return e.Code == CodeShutdown && target == hraft.ErrTransportShutdown
}

// Timeout reports whether the peer gave up waiting for raft (CodeTimeout), so
// that a RemoteError is a net.Error.
func (e *RemoteError) Timeout() bool { return e.Code == CodeTimeout }

// Temporary is Timeout (net.Error).
func (e *RemoteError) Temporary() bool { return e.Timeout() }

// The status byte that starts every reply envelope.
//
// Only append to this list: the values are part of the protocol.
const (
	statusOK    = 0 // the response body follows
	statusError = 1 // an ErrorCode and a message follow
)

// --- encoding ----------------------------------------------------------------

func appendUvarint(dst []byte, v uint64) []byte {
	if v < 0x80 {
		return append(dst, byte(v))
	}
	return binary.AppendUvarint(dst, v)
}

// appendBytes appends uvarint(len+1) and the bytes; nil is a single 0, so nil
// and empty stay distinct.
func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return append(dst, 0)
	}
	dst = appendUvarint(dst, uint64(len(b))+1)
	return append(dst, b...)
}

func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// appendTime appends 0 for the zero time, else 1, varint(Unix seconds),
// uvarint(nanoseconds). The location and the monotonic reading are not sent.
func appendTime(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	dst = binary.AppendVarint(dst, t.Unix())
	return appendUvarint(dst, uint64(t.Nanosecond()))
}

// appendHeader appends the version byte and the RPCHeader that start every
// raft message. ProtocolVersion must be in [0, MaxInt32] to decode; raft's
// are 0 to 3.
func appendHeader(dst []byte, h *hraft.RPCHeader) []byte {
	dst = append(dst, wireVersion)
	dst = appendUvarint(dst, uint64(h.ProtocolVersion))
	dst = appendBytes(dst, h.ID)
	return appendBytes(dst, h.Addr)
}

// appendLog appends one entry of an AppendEntriesRequest.
func appendLog(dst []byte, l *hraft.Log) []byte {
	dst = appendUvarint(dst, l.Index)
	dst = appendUvarint(dst, l.Term)
	dst = appendUvarint(dst, uint64(l.Type))
	dst = appendBytes(dst, l.Data)
	dst = appendBytes(dst, l.Extensions)
	return appendTime(dst, l.AppendedAt)
}

// appendAppendEntriesRequest appends r. Its entries must not be nil pointers;
// the Entries slice itself may be nil (sent as such).
func appendAppendEntriesRequest(dst []byte, r *hraft.AppendEntriesRequest) []byte {
	dst = appendHeader(dst, &r.RPCHeader)
	dst = appendUvarint(dst, r.Term)
	dst = appendBytes(dst, r.Leader) //nolint:staticcheck // deprecated, but sent: every field is on the wire (PROTOCOL.md)
	dst = appendUvarint(dst, r.PrevLogEntry)
	dst = appendUvarint(dst, r.PrevLogTerm)
	dst = appendUvarint(dst, r.LeaderCommitIndex)
	if r.Entries == nil {
		return append(dst, 0)
	}
	dst = appendUvarint(dst, uint64(len(r.Entries))+1)
	for _, l := range r.Entries {
		dst = appendLog(dst, l)
	}
	return dst
}

func appendAppendEntriesResponse(dst []byte, r *hraft.AppendEntriesResponse) []byte {
	dst = appendHeader(dst, &r.RPCHeader)
	dst = appendUvarint(dst, r.Term)
	dst = appendUvarint(dst, r.LastLog)
	dst = appendBool(dst, r.Success)
	return appendBool(dst, r.NoRetryBackoff)
}

func appendRequestVoteRequest(dst []byte, r *hraft.RequestVoteRequest) []byte {
	dst = appendHeader(dst, &r.RPCHeader)
	dst = appendUvarint(dst, r.Term)
	dst = appendBytes(dst, r.Candidate) //nolint:staticcheck // deprecated, but sent: every field is on the wire (PROTOCOL.md)
	dst = appendUvarint(dst, r.LastLogIndex)
	dst = appendUvarint(dst, r.LastLogTerm)
	return appendBool(dst, r.LeadershipTransfer)
}

func appendRequestVoteResponse(dst []byte, r *hraft.RequestVoteResponse) []byte {
	dst = appendHeader(dst, &r.RPCHeader)
	dst = appendUvarint(dst, r.Term)
	dst = appendBytes(dst, r.Peers)
	return appendBool(dst, r.Granted)
}

func appendRequestPreVoteRequest(dst []byte, r *hraft.RequestPreVoteRequest) []byte {
	dst = appendHeader(dst, &r.RPCHeader)
	dst = appendUvarint(dst, r.Term)
	dst = appendUvarint(dst, r.LastLogIndex)
	return appendUvarint(dst, r.LastLogTerm)
}

func appendRequestPreVoteResponse(dst []byte, r *hraft.RequestPreVoteResponse) []byte {
	dst = appendHeader(dst, &r.RPCHeader)
	dst = appendUvarint(dst, r.Term)
	return appendBool(dst, r.Granted)
}

// appendInstallSnapshotRequest appends r. SnapshotVersion must be in
// [0, MaxInt32] and Size must not be negative to decode; raft's always are.
func appendInstallSnapshotRequest(dst []byte, r *hraft.InstallSnapshotRequest) []byte {
	dst = appendHeader(dst, &r.RPCHeader)
	dst = appendUvarint(dst, uint64(r.SnapshotVersion))
	dst = appendUvarint(dst, r.Term)
	dst = appendBytes(dst, r.Leader)
	dst = appendUvarint(dst, r.LastLogIndex)
	dst = appendUvarint(dst, r.LastLogTerm)
	dst = appendBytes(dst, r.Peers)
	dst = appendBytes(dst, r.Configuration)
	dst = appendUvarint(dst, r.ConfigurationIndex)
	return appendUvarint(dst, uint64(r.Size))
}

func appendInstallSnapshotResponse(dst []byte, r *hraft.InstallSnapshotResponse) []byte {
	dst = appendHeader(dst, &r.RPCHeader)
	dst = appendUvarint(dst, r.Term)
	return appendBool(dst, r.Success)
}

func appendTimeoutNowRequest(dst []byte, r *hraft.TimeoutNowRequest) []byte {
	return appendHeader(dst, &r.RPCHeader)
}

func appendTimeoutNowResponse(dst []byte, r *hraft.TimeoutNowResponse) []byte {
	return appendHeader(dst, &r.RPCHeader)
}

// snapChunk is one piece of a snapshot stream: the bytes at Offset of the
// snapshot sent in session Session.
type snapChunk struct {
	Session, Offset uint64
	// Data is the rest of the body, with no length prefix. On decode it
	// aliases the input (never nil: empty when the chunk is).
	Data []byte
}

// snapDone ends a snapshot stream: Size is the total number of bytes the
// sender sent in the session.
type snapDone struct {
	Session, Size uint64
}

func appendSnapChunk(dst []byte, c *snapChunk) []byte {
	dst = append(dst, wireVersion)
	dst = appendUvarint(dst, c.Session)
	dst = appendUvarint(dst, c.Offset)
	return append(dst, c.Data...)
}

func appendSnapDone(dst []byte, d *snapDone) []byte {
	dst = append(dst, wireVersion)
	dst = appendUvarint(dst, d.Session)
	return appendUvarint(dst, d.Size)
}

// appendSnapSession appends a body that is only a session: the reply to a
// snapshot open, and the abort request.
func appendSnapSession(dst []byte, session uint64) []byte {
	dst = append(dst, wireVersion)
	return appendUvarint(dst, session)
}

// appendOK appends the envelope of a successful reply; the response body
// follows.
func appendOK(dst []byte) []byte {
	return append(dst, statusOK)
}

// appendError appends an error reply: status, code and msg, cut to at most
// maxErrorMessage bytes (backing off to the start of a UTF-8 sequence, so a
// valid message stays valid).
func appendError(dst []byte, code ErrorCode, msg string) []byte {
	if len(msg) > maxErrorMessage {
		cut := maxErrorMessage
		// The sequence holding msg[cut] starts at most UTFMax-1 bytes back.
		for cut > maxErrorMessage-(utf8.UTFMax-1) && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	dst = append(dst, statusError, byte(code))
	dst = appendUvarint(dst, uint64(len(msg)))
	return append(dst, msg...)
}

// --- decoding ----------------------------------------------------------------

// decoder reads the fields of one message in order. The first failure is kept
// in err, so a decode function reads all its fields and checks once. Reads
// after a failure stay within bounds and allocate nothing; their values are
// thrown away with the message.
type decoder struct {
	b     []byte
	off   int
	msg   string // message name, for errors
	entry int    // index of the entry being read, or -1
	err   error
}

// newDecoder starts a decoder on a body whose first byte must be wireVersion.
func newDecoder(b []byte, msg string) decoder {
	d := decoder{b: b, msg: msg, entry: -1}
	switch {
	case len(b) == 0:
		d.fail("version", "empty message")
	case b[0] != wireVersion:
		d.fail("version", "unknown version "+strconv.Itoa(int(b[0])))
	default:
		d.off = 1
	}
	return d
}

func (d *decoder) fail(field, what string) {
	if d.err != nil {
		return
	}
	if d.entry >= 0 {
		d.err = fmt.Errorf("%w: %s.Entries[%d].%s at byte %d: %s", ErrMalformed, d.msg, d.entry, field, d.off, what)
		return
	}
	d.err = fmt.Errorf("%w: %s.%s at byte %d: %s", ErrMalformed, d.msg, field, d.off, what)
}

// finish returns the first failure, or a failure if bytes are left over.
func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("end", strconv.Itoa(len(d.b)-d.off)+" trailing bytes")
	}
	return d.err
}

// uvarint reads a minimal uvarint.
func (d *decoder) uvarint(field string) uint64 {
	b, off := d.b, d.off
	if off < len(b) && b[off] < 0x80 {
		d.off = off + 1
		return uint64(b[off])
	}
	if d.err != nil {
		return 0
	}
	var v uint64
	for i, shift := off, uint(0); i < len(b); i, shift = i+1, shift+7 {
		c := b[i]
		if i-off == binary.MaxVarintLen64-1 && c > 1 {
			d.fail(field, "varint overflows 64 bits")
			return 0
		}
		if c < 0x80 {
			if c == 0 {
				d.fail(field, "varint not minimal")
				return 0
			}
			d.off = i + 1
			return v | uint64(c)<<shift
		}
		v |= uint64(c&0x7f) << shift
	}
	d.fail(field, "truncated")
	return 0
}

// varint reads a zigzag varint (a minimal uvarint underneath).
func (d *decoder) varint(field string) int64 {
	u := d.uvarint(field)
	return int64(u>>1) ^ -int64(u&1)
}

// intField reads a Go int field sent as a uvarint, bounded by maxVersionField.
func (d *decoder) intField(field string) int {
	v := d.uvarint(field)
	if v > maxVersionField {
		d.fail(field, "value "+strconv.FormatUint(v, 10)+" exceeds 2^31-1")
		return 0
	}
	return int(v)
}

func (d *decoder) bool(field string) bool {
	if d.err != nil {
		return false
	}
	if d.off >= len(d.b) {
		d.fail(field, "truncated")
		return false
	}
	v := d.b[d.off]
	if v > 1 {
		d.fail(field, "bool is "+strconv.Itoa(int(v)))
		return false
	}
	d.off++
	return v == 1
}

// bytes reads uvarint(len+1) and the bytes: nil for 0, else a slice of the
// input with its capacity capped.
func (d *decoder) bytes(field string) []byte {
	l := d.uvarint(field)
	if l == 0 {
		return nil
	}
	l--
	if left := len(d.b) - d.off; l > uint64(left) {
		d.fail(field, "length "+strconv.FormatUint(l, 10)+" exceeds the "+strconv.Itoa(left)+" bytes left")
		return nil
	}
	start, end := d.off, d.off+int(l)
	d.off = end
	return d.b[start:end:end]
}

func (d *decoder) time(field string) time.Time {
	if d.err != nil {
		return time.Time{}
	}
	if d.off >= len(d.b) {
		d.fail(field, "truncated")
		return time.Time{}
	}
	tag := d.b[d.off]
	switch tag {
	case 0:
		d.off++
		return time.Time{}
	case 1:
		d.off++
	default:
		d.fail(field, "time marker is "+strconv.Itoa(int(tag)))
		return time.Time{}
	}
	sec := d.varint(field)
	nsec := d.uvarint(field)
	switch {
	case d.err != nil:
		return time.Time{}
	case nsec >= 1e9:
		d.fail(field, "nanoseconds "+strconv.FormatUint(nsec, 10)+" not below 1e9")
		return time.Time{}
	case sec == zeroUnix && nsec == 0:
		d.fail(field, "the zero time sent as an instant")
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec))
}

func (d *decoder) header(h *hraft.RPCHeader) {
	h.ProtocolVersion = hraft.ProtocolVersion(d.intField("ProtocolVersion"))
	h.ID = d.bytes("ID")
	h.Addr = d.bytes("Addr")
}

// decodeAppendEntriesRequest decodes b into r, which it overwrites (zeroed on
// error). For the entries it allocates exactly one []hraft.Log and one
// []*hraft.Log pointing into it, after checking that the count fits the bytes
// left at minEntryLen each.
func decodeAppendEntriesRequest(b []byte, r *hraft.AppendEntriesRequest) error {
	d := newDecoder(b, "AppendEntriesRequest")
	d.header(&r.RPCHeader)
	r.Term = d.uvarint("Term")
	r.Leader = d.bytes("Leader") //nolint:staticcheck // deprecated, but sent: every field is on the wire (PROTOCOL.md)
	r.PrevLogEntry = d.uvarint("PrevLogEntry")
	r.PrevLogTerm = d.uvarint("PrevLogTerm")
	r.LeaderCommitIndex = d.uvarint("LeaderCommitIndex")
	r.Entries = d.entries()
	if err := d.finish(); err != nil {
		*r = hraft.AppendEntriesRequest{}
		return err
	}
	return nil
}

func (d *decoder) entries() []*hraft.Log {
	c := d.uvarint("Entries")
	if d.err != nil || c == 0 {
		return nil
	}
	n := c - 1
	if left := len(d.b) - d.off; n > uint64(left/minEntryLen) {
		d.fail("Entries", "count "+strconv.FormatUint(n, 10)+" cannot fit the "+strconv.Itoa(left)+" bytes left")
		return nil
	}
	logs := make([]hraft.Log, n)
	ptrs := make([]*hraft.Log, n)
	for i := range logs {
		d.entry = i
		l := &logs[i]
		l.Index = d.uvarint("Index")
		l.Term = d.uvarint("Term")
		if t := d.uvarint("Type"); t > math.MaxUint8 {
			d.fail("Type", "value "+strconv.FormatUint(t, 10)+" exceeds 255")
		} else {
			l.Type = hraft.LogType(t)
		}
		l.Data = d.bytes("Data")
		l.Extensions = d.bytes("Extensions")
		l.AppendedAt = d.time("AppendedAt")
		if d.err != nil {
			return nil
		}
		ptrs[i] = l
	}
	d.entry = -1
	return ptrs
}

func decodeAppendEntriesResponse(b []byte, r *hraft.AppendEntriesResponse) error {
	d := newDecoder(b, "AppendEntriesResponse")
	d.header(&r.RPCHeader)
	r.Term = d.uvarint("Term")
	r.LastLog = d.uvarint("LastLog")
	r.Success = d.bool("Success")
	r.NoRetryBackoff = d.bool("NoRetryBackoff")
	if err := d.finish(); err != nil {
		*r = hraft.AppendEntriesResponse{}
		return err
	}
	return nil
}

func decodeRequestVoteRequest(b []byte, r *hraft.RequestVoteRequest) error {
	d := newDecoder(b, "RequestVoteRequest")
	d.header(&r.RPCHeader)
	r.Term = d.uvarint("Term")
	r.Candidate = d.bytes("Candidate") //nolint:staticcheck // deprecated, but sent: every field is on the wire (PROTOCOL.md)
	r.LastLogIndex = d.uvarint("LastLogIndex")
	r.LastLogTerm = d.uvarint("LastLogTerm")
	r.LeadershipTransfer = d.bool("LeadershipTransfer")
	if err := d.finish(); err != nil {
		*r = hraft.RequestVoteRequest{}
		return err
	}
	return nil
}

func decodeRequestVoteResponse(b []byte, r *hraft.RequestVoteResponse) error {
	d := newDecoder(b, "RequestVoteResponse")
	d.header(&r.RPCHeader)
	r.Term = d.uvarint("Term")
	r.Peers = d.bytes("Peers")
	r.Granted = d.bool("Granted")
	if err := d.finish(); err != nil {
		*r = hraft.RequestVoteResponse{}
		return err
	}
	return nil
}

func decodeRequestPreVoteRequest(b []byte, r *hraft.RequestPreVoteRequest) error {
	d := newDecoder(b, "RequestPreVoteRequest")
	d.header(&r.RPCHeader)
	r.Term = d.uvarint("Term")
	r.LastLogIndex = d.uvarint("LastLogIndex")
	r.LastLogTerm = d.uvarint("LastLogTerm")
	if err := d.finish(); err != nil {
		*r = hraft.RequestPreVoteRequest{}
		return err
	}
	return nil
}

func decodeRequestPreVoteResponse(b []byte, r *hraft.RequestPreVoteResponse) error {
	d := newDecoder(b, "RequestPreVoteResponse")
	d.header(&r.RPCHeader)
	r.Term = d.uvarint("Term")
	r.Granted = d.bool("Granted")
	if err := d.finish(); err != nil {
		*r = hraft.RequestPreVoteResponse{}
		return err
	}
	return nil
}

func decodeInstallSnapshotRequest(b []byte, r *hraft.InstallSnapshotRequest) error {
	d := newDecoder(b, "InstallSnapshotRequest")
	d.header(&r.RPCHeader)
	r.SnapshotVersion = hraft.SnapshotVersion(d.intField("SnapshotVersion"))
	r.Term = d.uvarint("Term")
	r.Leader = d.bytes("Leader")
	r.LastLogIndex = d.uvarint("LastLogIndex")
	r.LastLogTerm = d.uvarint("LastLogTerm")
	r.Peers = d.bytes("Peers")
	r.Configuration = d.bytes("Configuration")
	r.ConfigurationIndex = d.uvarint("ConfigurationIndex")
	if size := d.uvarint("Size"); size > math.MaxInt64 {
		d.fail("Size", "value "+strconv.FormatUint(size, 10)+" is negative as an int64")
	} else {
		r.Size = int64(size)
	}
	if err := d.finish(); err != nil {
		*r = hraft.InstallSnapshotRequest{}
		return err
	}
	return nil
}

func decodeInstallSnapshotResponse(b []byte, r *hraft.InstallSnapshotResponse) error {
	d := newDecoder(b, "InstallSnapshotResponse")
	d.header(&r.RPCHeader)
	r.Term = d.uvarint("Term")
	r.Success = d.bool("Success")
	if err := d.finish(); err != nil {
		*r = hraft.InstallSnapshotResponse{}
		return err
	}
	return nil
}

func decodeTimeoutNowRequest(b []byte, r *hraft.TimeoutNowRequest) error {
	d := newDecoder(b, "TimeoutNowRequest")
	d.header(&r.RPCHeader)
	if err := d.finish(); err != nil {
		*r = hraft.TimeoutNowRequest{}
		return err
	}
	return nil
}

func decodeTimeoutNowResponse(b []byte, r *hraft.TimeoutNowResponse) error {
	d := newDecoder(b, "TimeoutNowResponse")
	d.header(&r.RPCHeader)
	if err := d.finish(); err != nil {
		*r = hraft.TimeoutNowResponse{}
		return err
	}
	return nil
}

// decodeSnapChunk decodes b into c; c.Data is the rest of b after the offset
// (aliasing it, capacity capped, empty rather than nil).
func decodeSnapChunk(b []byte, c *snapChunk) error {
	d := newDecoder(b, "snapChunk")
	c.Session = d.uvarint("Session")
	c.Offset = d.uvarint("Offset")
	if d.err != nil {
		*c = snapChunk{}
		return d.err
	}
	c.Data = b[d.off:len(b):len(b)]
	return nil
}

func decodeSnapDone(b []byte, s *snapDone) error {
	d := newDecoder(b, "snapDone")
	s.Session = d.uvarint("Session")
	s.Size = d.uvarint("Size")
	if err := d.finish(); err != nil {
		*s = snapDone{}
		return err
	}
	return nil
}

func decodeSnapSession(b []byte) (uint64, error) {
	d := newDecoder(b, "snapSession")
	s := d.uvarint("Session")
	if err := d.finish(); err != nil {
		return 0, err
	}
	return s, nil
}

// decodeReply opens a reply envelope. For status OK it returns the response
// body that follows (aliasing b, capacity capped); for an error reply, a
// *RemoteError; for anything else, an error wrapping ErrMalformed. Code 0 is
// malformed; a code this version does not know is returned as it is.
func decodeReply(b []byte) (body []byte, err error) {
	d := decoder{b: b, msg: "reply", entry: -1}
	if len(b) == 0 {
		d.fail("status", "empty reply")
		return nil, d.err
	}
	switch b[0] {
	case statusOK:
		return b[1:len(b):len(b)], nil
	case statusError:
	default:
		d.fail("status", "unknown status "+strconv.Itoa(int(b[0])))
		return nil, d.err
	}
	d.off = 1
	if len(b) < 2 {
		d.fail("code", "truncated")
		return nil, d.err
	}
	code := ErrorCode(b[1])
	if code == 0 {
		d.fail("code", "code 0")
		return nil, d.err
	}
	d.off = 2
	l := d.uvarint("message")
	if d.err != nil {
		return nil, d.err
	}
	if l > maxErrorMessage {
		d.fail("message", "length "+strconv.FormatUint(l, 10)+" exceeds 4096")
		return nil, d.err
	}
	if left := len(b) - d.off; l > uint64(left) {
		d.fail("message", "length "+strconv.FormatUint(l, 10)+" exceeds the "+strconv.Itoa(left)+" bytes left")
		return nil, d.err
	}
	msg := string(b[d.off : d.off+int(l)])
	d.off += int(l)
	if err := d.finish(); err != nil {
		return nil, err
	}
	return nil, &RemoteError{Code: code, Message: msg}
}
