package codec

// MaxErrorMessage bounds the message of an ERROR or GOAWAY body; senders
// truncate longer messages.
const MaxErrorMessage = 4 << 10

// ErrorBody is the decoded body of an ERROR frame (PROTOCOL.md §3.5):
//
//	nameLen u8, name  the registered name of the error ("" if none)
//	message           the rest, UTF-8
//
// Name and Message alias the frame.
type ErrorBody struct {
	Name    []byte
	Message []byte
}

// AppendErrorBody appends an ERROR body. A name longer than 255 bytes is
// dropped; a message longer than MaxErrorMessage is truncated.
func AppendErrorBody(dst []byte, name, message string) []byte {
	if len(name) > 255 {
		name = ""
	}
	if len(message) > MaxErrorMessage {
		message = message[:MaxErrorMessage]
	}
	dst = append(dst, byte(len(name)))
	dst = append(dst, name...)
	return append(dst, message...)
}

// ErrorBodyLen is the number of bytes AppendErrorBody appends.
func ErrorBodyLen(name, message string) int {
	if len(name) > 255 {
		name = ""
	}
	return 1 + len(name) + min(len(message), MaxErrorMessage)
}

// ParseErrorBody decodes an ERROR body.
func ParseErrorBody(body []byte) (ErrorBody, error) {
	if len(body) < 1 {
		return ErrorBody{}, ErrBadFrame
	}
	n := int(body[0])
	if len(body) < 1+n {
		return ErrorBody{}, ErrBadFrame
	}
	msg := body[1+n:]
	if len(msg) > MaxErrorMessage {
		msg = msg[:MaxErrorMessage]
	}
	return ErrorBody{Name: body[1 : 1+n : 1+n], Message: msg}, nil
}
