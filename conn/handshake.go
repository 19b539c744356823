package conn

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/codec"
)

// The handshake (PROTOCOL.md §5) runs on the dialing or accepting goroutine,
// over the blocking net.Conn, before the connection is enrolled on a loop:
//
//	acceptor                          dialer
//	  <- TLS handshake ->
//	  preface(range, nonce_a) ->      <- preface(range, nonce_d), HELLO(proof_d)
//	  HELLO_ACK(version, proof_a) ->  (or GOAWAY(code) and close)
//
// proof_d = HMAC(K, "hawser/1 dialer" || binding || nodeID_d)
// proof_a = HMAC(K, "hawser/1 acceptor" || binding || proof_d || nodeID_a)
//
// K is derived from the cluster key with HKDF-SHA256. The binding is 32
// bytes of TLS exporter keying material, unique to this TLS session, so a
// proof cannot be replayed on another connection; without TLS
// (InsecurePlaintext) it is nonce_d || nonce_a, and the dialer reads the
// acceptor's preface before it sends HELLO.

const (
	exporterLabel = "EXPORTER-hawser-cluster-auth"
	authInfo      = "hawser rpc auth v1"
	dialerLabel   = "hawser/1 dialer"
	acceptLabel   = "hawser/1 acceptor"
)

// peerInfo is what the handshake learned about the peer and agreed on.
type peerInfo struct {
	version    uint16
	features   codec.Features // the features both sides announced
	nodeID     string
	appVersion string
	maxFrame   uint32 // the peer accepts frames up to this body size
	maxMessage uint32 // the peer accepts messages up to this size
	window     uint32 // the peer's receive window per stream
	maxCalls   uint32 // dialer: calls the acceptor allows in flight
	maxStreams uint32 // dialer: streams the acceptor allows in flight
	methods    map[uint64]struct{}

	platform uint32 // dialer: the acceptor's PlatformVersion
	user     string // acceptor: the logged-in username (client RPC)
	session  any    // acceptor: what Config.Authenticate returned
}

func authKey(clusterKey []byte) []byte {
	k, err := hkdf.Key(sha256.New, clusterKey, nil, authInfo, 32)
	if err != nil {
		panic("conn: hkdf: " + err.Error()) // only for key lengths beyond 255*32
	}
	return k
}

func proof(key []byte, label string, binding, extra []byte, nodeID string) [codec.ProofSize]byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write(binding)
	m.Write(extra)
	m.Write([]byte{byte(len(nodeID))})
	m.Write([]byte(nodeID))
	var out [codec.ProofSize]byte
	m.Sum(out[:0])
	return out
}

func newPreface(versions [2]uint16) (codec.Preface, error) {
	p := codec.Preface{Min: versions[0], Max: versions[1]}
	_, err := rand.Read(p.Nonce[:])
	return p, err
}

// handshake is one side's state while the handshake runs.
type handshake struct {
	cfg  *Config
	nc   net.Conn
	tr   *transport
	tc   *tls.Conn // nil without TLS
	rw   io.ReadWriter
	self codec.Preface
	peer codec.Preface
}

func newHandshake(cfg *Config, nc net.Conn) *handshake {
	h := &handshake{cfg: cfg, nc: nc, tr: &transport{nc: nc}}
	h.rw = h.tr
	return h
}

// start runs the TLS handshake (tls.Client or tls.Server) unless the
// connection is plaintext, and makes this side's preface.
func (h *handshake) start(ctx context.Context, newTLS func(net.Conn, *tls.Config) *tls.Conn) error {
	if !h.cfg.InsecurePlaintext {
		h.tc = newTLS(h.tr, h.cfg.TLS)
		if err := h.tc.HandshakeContext(ctx); err != nil {
			return err
		}
		h.rw = h.tc
	}
	var err error
	h.self, err = newPreface(h.cfg.versions)
	return err
}

func (h *handshake) binding() ([]byte, error) {
	if h.tc == nil {
		b := make([]byte, 0, 64)
		if h.isDialer() {
			b = append(append(b, h.self.Nonce[:]...), h.peer.Nonce[:]...)
		} else {
			b = append(append(b, h.peer.Nonce[:]...), h.self.Nonce[:]...)
		}
		return b, nil
	}
	cs := h.tc.ConnectionState()
	return cs.ExportKeyingMaterial(exporterLabel, nil, 32)
}

func (h *handshake) isDialer() bool { return h.cfg.Router == nil }

// readPreface reads the peer's preface.
func (h *handshake) readPreface() error {
	var b [codec.PrefaceSize]byte
	if _, err := io.ReadFull(h.rw, b[:]); err != nil {
		return closedDuringHandshake(err)
	}
	p, err := codec.ParsePreface(b[:])
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	h.peer = p
	return nil
}

// readHandshakeFrame reads one frame of at most codec.MaxHelloSize body.
func (h *handshake) readHandshakeFrame() (codec.Frame, error) {
	var hb [codec.HeaderSize]byte
	if _, err := io.ReadFull(h.rw, hb[:]); err != nil {
		return codec.Frame{}, closedDuringHandshake(err)
	}
	hdr, err := codec.ParseHeader(hb[:], codec.MaxHelloSize)
	if err != nil {
		return codec.Frame{}, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	body := make([]byte, hdr.Length)
	if _, err := io.ReadFull(h.rw, body); err != nil {
		return codec.Frame{}, closedDuringHandshake(err)
	}
	return codec.Frame{Header: hdr, Body: body}, nil
}

// closedDuringHandshake names a peer that hung up mid-handshake.
func closedDuringHandshake(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the peer closed the connection: %w", ErrHandshake, err)
	}
	return err
}

// refuse sends a GOAWAY with code and message: the handshake failed.
func (h *handshake) refuse(code codec.Code, msg string) { h.refuseNamed(code, "", msg) }

// refuseNamed is refuse with a registered error name (client RPC logins).
func (h *handshake) refuseNamed(code codec.Code, name, msg string) {
	body := codec.AppendErrorBody(nil, name, msg)
	f := codec.Append(nil, codec.Frame{Header: codec.Header{Kind: codec.KindGoAway, Code: code}, Body: body})
	_ = h.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = h.rw.Write(f)
}

func versionError(self, peer codec.Preface) error {
	return fmt.Errorf("%w: this side speaks %d..%d, the peer %d..%d",
		ErrVersionMismatch, self.Min, self.Max, peer.Min, peer.Max)
}

// dialHandshake runs the dialer's side. ctx bounds it.
func dialHandshake(ctx context.Context, cfg *Config, nc net.Conn) (*handshake, *peerInfo, error) {
	h := newHandshake(cfg, nc)
	stop := watchDeadline(ctx, nc)
	defer stop()
	if err := h.start(ctx, tls.Client); err != nil {
		return nil, nil, err
	}
	out := codec.AppendPreface(make([]byte, 0, 512), h.self)
	if cfg.InsecurePlaintext {
		// The proof binds the acceptor's nonce: read its preface first.
		if _, err := h.rw.Write(out); err != nil {
			return nil, nil, err
		}
		out = out[:0]
		if err := h.readPreface(); err != nil {
			return nil, nil, err
		}
	}
	binding, err := h.binding()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	hello := codec.Hello{
		NodeID:       cfg.NodeID,
		AppVersion:   cfg.AppVersion,
		MaxFrame:     cfg.MaxFrameSize,
		MaxMessage:   cfg.MaxMessageSize,
		StreamWindow: cfg.StreamWindow,
	}
	if cfg.Login != nil {
		hello.Username, hello.Password = cfg.Login.Username, cfg.Login.Password
	} else {
		hello.Proof = proof(cfg.authKey, dialerLabel, binding, nil, cfg.NodeID)
	}
	if cfg.Compression {
		hello.Features |= codec.FeatureS2
	}
	if out, err = appendHelloFrame(out, codec.KindHello, &hello); err != nil {
		return nil, nil, err
	}
	if _, err := h.rw.Write(out); err != nil {
		return nil, nil, err
	}
	if !cfg.InsecurePlaintext {
		if err := h.readPreface(); err != nil {
			return nil, nil, err
		}
	}
	if _, ok := codec.Negotiate(h.self, h.peer); !ok {
		return nil, nil, versionError(h.self, h.peer)
	}
	f, err := h.readHandshakeFrame()
	if err != nil {
		return nil, nil, err
	}
	switch f.Kind {
	case codec.KindHelloAck:
	case codec.KindGoAway:
		eb, _ := codec.ParseErrorBody(f.Body)
		pe := &PeerError{Code: f.Code, Name: string(eb.Name), Message: string(eb.Message)}
		if f.Code == codec.CodeUnauthenticated || f.Code == codec.CodeVersionMismatch {
			return nil, nil, pe // matches ErrAuth or ErrVersionMismatch
		}
		return nil, nil, fmt.Errorf("%w: refused by the acceptor: %w", ErrHandshake, pe)
	default:
		return nil, nil, fmt.Errorf("%w: expected HELLO_ACK, got %v", ErrHandshake, f.Kind)
	}
	ack, err := codec.ParseHello(f.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	if cfg.Login == nil {
		want := proof(cfg.authKey, acceptLabel, binding, hello.Proof[:], ack.NodeID)
		if !hmac.Equal(want[:], ack.Proof[:]) {
			return nil, nil, fmt.Errorf("%w: the acceptor's proof does not match this cluster key", ErrAuth)
		}
	}
	if ack.Version < max(h.self.Min, h.peer.Min) || ack.Version > min(h.self.Max, h.peer.Max) {
		return nil, nil, fmt.Errorf("%w: acceptor chose version %d", ErrHandshake, ack.Version)
	}
	pi := peerFromHello(&ack, hello.Features)
	pi.platform = ack.PlatformVersion
	pi.methods = make(map[uint64]struct{}, len(ack.Methods))
	for _, m := range ack.Methods {
		pi.methods[m] = struct{}{}
	}
	return h, pi, nil
}

// acceptHandshake runs the acceptor's side. ctx bounds it.
func acceptHandshake(ctx context.Context, cfg *Config, nc net.Conn) (*handshake, *peerInfo, error) {
	h := newHandshake(cfg, nc)
	stop := watchDeadline(ctx, nc)
	defer stop()
	if err := h.start(ctx, tls.Server); err != nil {
		return nil, nil, err
	}
	if _, err := h.rw.Write(codec.AppendPreface(nil, h.self)); err != nil {
		return nil, nil, err
	}
	if err := h.readPreface(); err != nil {
		if errors.Is(err, codec.ErrProtocol) {
			h.refuse(codec.CodeProtocol, "bad preface")
		}
		return nil, nil, err
	}
	version, ok := codec.Negotiate(h.self, h.peer)
	if !ok {
		err := versionError(h.self, h.peer)
		h.refuse(codec.CodeVersionMismatch, err.Error())
		return nil, nil, err
	}
	f, err := h.readHandshakeFrame()
	if err != nil {
		if errors.Is(err, codec.ErrProtocol) {
			h.refuse(codec.CodeProtocol, "expected HELLO")
		}
		return nil, nil, err
	}
	if f.Kind != codec.KindHello {
		h.refuse(codec.CodeProtocol, "expected HELLO")
		return nil, nil, fmt.Errorf("%w: %w: %v before the handshake completed", ErrHandshake, codec.ErrProtocol, f.Kind)
	}
	hello, err := codec.ParseHello(f.Body)
	if err != nil {
		h.refuse(codec.CodeProtocol, "malformed HELLO")
		return nil, nil, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	binding, err := h.binding()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	var session any
	if cfg.Authenticate != nil {
		if hello.Username == "" {
			h.refuse(codec.CodeUnauthenticated, "this port serves client RPC: log in with a username and password")
			return nil, nil, fmt.Errorf("%w: the dialer did not log in", ErrAuth)
		}
		session, err = cfg.Authenticate(ctx, LoginRequest{Remote: nc.RemoteAddr(), Username: hello.Username, Password: hello.Password})
		if err != nil {
			code, name, msg := hawser.WireError(err)
			if code == codec.CodeUnknown {
				code = codec.CodeUnauthenticated
			}
			h.refuseNamed(code, name, msg)
			return nil, nil, fmt.Errorf("%w: login of %q: %w", ErrAuth, hello.Username, err)
		}
	} else {
		want := proof(cfg.authKey, dialerLabel, binding, nil, hello.NodeID)
		if !hmac.Equal(want[:], hello.Proof[:]) {
			h.refuse(codec.CodeUnauthenticated, "cluster-key proof does not match")
			return nil, nil, fmt.Errorf("%w: the dialer's proof does not match this cluster key", ErrAuth)
		}
	}
	ack := codec.Hello{
		Version:         version,
		NodeID:          cfg.NodeID,
		AppVersion:      cfg.AppVersion,
		PlatformVersion: cfg.PlatformVersion,
		MaxFrame:        cfg.MaxFrameSize,
		MaxMessage:      cfg.MaxMessageSize,
		StreamWindow:    cfg.StreamWindow,
		MaxCalls:        cfg.MaxCalls,
		MaxStreams:      cfg.MaxStreams,
		Methods:         cfg.Router.Methods(),
	}
	if cfg.Authenticate == nil {
		ack.Proof = proof(cfg.authKey, acceptLabel, binding, hello.Proof[:], cfg.NodeID)
	}
	if cfg.Compression {
		ack.Features |= codec.FeatureS2
	}
	out, err := appendHelloFrame(nil, codec.KindHelloAck, &ack)
	if err != nil {
		return nil, nil, err
	}
	if _, err := h.rw.Write(out); err != nil {
		return nil, nil, err
	}
	pi := peerFromHello(&hello, ack.Features)
	pi.version = version
	pi.session = session
	if session != nil {
		pi.user = hello.Username
	}
	return h, pi, nil
}

func appendHelloFrame(dst []byte, kind codec.Kind, hello *codec.Hello) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, codec.HeaderSize)...)
	dst, err := codec.AppendHello(dst, hello)
	if err != nil {
		return nil, err
	}
	codec.PutHeader(dst[start:], codec.Header{Kind: kind, Length: uint32(len(dst) - start - codec.HeaderSize)})
	return dst, nil
}

func peerFromHello(h *codec.Hello, ownFeatures codec.Features) *peerInfo {
	pi := &peerInfo{
		version:    h.Version,
		features:   h.Features & ownFeatures,
		nodeID:     h.NodeID,
		appVersion: h.AppVersion,
		maxFrame:   h.MaxFrame,
		maxMessage: h.MaxMessage,
		window:     h.StreamWindow,
		maxCalls:   h.MaxCalls,
		maxStreams: h.MaxStreams,
	}
	if pi.maxFrame == 0 {
		pi.maxFrame = codec.DefaultMaxFrameSize
	}
	if pi.maxMessage == 0 {
		pi.maxMessage = codec.DefaultMaxMessageSize
	}
	if pi.window == 0 {
		pi.window = DefaultStreamWindow
	}
	if pi.maxCalls == 0 {
		pi.maxCalls = DefaultMaxCalls
	}
	if pi.maxStreams == 0 {
		pi.maxStreams = DefaultMaxStreams
	}
	return pi
}

// watchDeadline applies ctx's deadline to nc and closes nc's blocking I/O
// when ctx is cancelled. The returned stop clears both.
func watchDeadline(ctx context.Context, nc net.Conn) (stop func()) {
	if d, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(d)
	}
	unwatch := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	return func() {
		unwatch()
		_ = nc.SetDeadline(time.Time{})
	}
}
