package raft

import (
	"context"
	"fmt"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/hawser-rpc/hawser/conn"
)

// The serving side. Every handler decodes its request (kept: raft keeps
// the entries, and every decoded byte slice aliases the request's buffer,
// which Keep takes out of recycling), hands the RPC to raft and waits for
// raft's response, encoded in the reply envelope. No wait is unbounded:
// each ends with the call's deadline (capped by Config.Timeout) or Close.

// handOff gives rpc to raft: to fn (the heartbeat handler) if it is set,
// else to the consumer. It refuses once Close has started; Close's barrier
// on t.live means no RPC reaches raft after Close returns.
func (t *Transport) handOff(ctx context.Context, rpc hraft.RPC, fn func(hraft.RPC)) (ErrorCode, string) {
	t.live.RLock()
	defer t.live.RUnlock()
	if t.isClosed() {
		t.stats.refused.Add(1)
		return CodeShutdown, "transport closed"
	}
	if fn != nil {
		t.stats.heartbeats.Add(1)
		fn(rpc)
		return 0, ""
	}
	select {
	case t.consumer <- rpc:
		return 0, ""
	case <-ctx.Done():
		return CodeTimeout, "raft did not take the RPC in time"
	case <-t.ctx.Done():
		t.stats.refused.Add(1)
		return CodeShutdown, "transport closed"
	}
}

// await waits for raft's response to an RPC handed off.
func (t *Transport) await(ctx context.Context, respCh <-chan hraft.RPCResponse) (hraft.RPCResponse, ErrorCode, string) {
	select {
	case r := <-respCh:
		return r, 0, ""
	case <-ctx.Done():
		return hraft.RPCResponse{}, CodeTimeout, "raft did not answer in time"
	case <-t.ctx.Done():
		return hraft.RPCResponse{}, CodeShutdown, "transport closed"
	}
}

// serveRPC runs one RPC through raft and returns the encoded reply.
func (t *Transport) serveRPC(ctx context.Context, req *conn.Request, cmd any, fn func(hraft.RPC)) []byte {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	respCh := make(chan hraft.RPCResponse, 1)
	if code, msg := t.handOff(ctx, hraft.RPC{Command: cmd, RespChan: respCh}, fn); code != 0 {
		return appendError(req.ReplyBuffer(16+len(msg)), code, msg)
	}
	r, code, msg := t.await(ctx, respCh)
	if code != 0 {
		return appendError(req.ReplyBuffer(16+len(msg)), code, msg)
	}
	return encodeResponse(req.ReplyBuffer(64), r)
}

// encodeResponse encodes raft's response, or its error (CodeRaft).
func encodeResponse(b []byte, r hraft.RPCResponse) []byte {
	if r.Error != nil {
		return appendError(b, CodeRaft, r.Error.Error())
	}
	switch v := r.Response.(type) {
	case *hraft.AppendEntriesResponse:
		return appendAppendEntriesResponse(appendOK(b), v)
	case *hraft.RequestVoteResponse:
		return appendRequestVoteResponse(appendOK(b), v)
	case *hraft.RequestPreVoteResponse:
		return appendRequestPreVoteResponse(appendOK(b), v)
	case *hraft.InstallSnapshotResponse:
		return appendInstallSnapshotResponse(appendOK(b), v)
	case *hraft.TimeoutNowResponse:
		return appendTimeoutNowResponse(appendOK(b), v)
	default:
		return appendError(b, CodeRaft, fmt.Sprintf("raft answered with %T", r.Response))
	}
}

// refuse answers a call that came after Close.
func (t *Transport) refuse(req *conn.Request) []byte {
	t.stats.refused.Add(1)
	return appendError(req.ReplyBuffer(32), CodeShutdown, "transport closed")
}

func badRequest(req *conn.Request, err error) []byte {
	msg := err.Error()
	return appendError(req.ReplyBuffer(16+len(msg)), CodeBadRequest, msg)
}

// heartbeatFn is the handler set by SetHeartbeatHandler, or nil.
func (t *Transport) heartbeatFn() func(hraft.RPC) {
	t.hbMu.Lock()
	defer t.hbMu.Unlock()
	return t.hb
}

// serveAppend serves raft.AppendEntries (ordered: one leader's appends run
// in arrival order) and raft.Heartbeat (on the pool, never behind
// appends). A request that meets raft's heartbeat predicate goes to the
// heartbeat handler when one is set, whichever method carried it.
func (t *Transport) serveAppend(ctx context.Context, req *conn.Request) ([]byte, error) {
	req.Keep()
	a := new(hraft.AppendEntriesRequest)
	if err := decodeAppendEntriesRequest(req.Payload, a); err != nil {
		return badRequest(req, err), nil
	}
	var fn func(hraft.RPC)
	if isHeartbeat(a) {
		fn = t.heartbeatFn()
	}
	return t.serveRPC(ctx, req, a, fn), nil
}

func (t *Transport) serveHeartbeat(ctx context.Context, req *conn.Request) ([]byte, error) {
	return t.serveAppend(ctx, req)
}

func (t *Transport) serveVote(ctx context.Context, req *conn.Request) ([]byte, error) {
	return serveDecoded(t, ctx, req, decodeRequestVoteRequest), nil
}

func (t *Transport) servePreVote(ctx context.Context, req *conn.Request) ([]byte, error) {
	return serveDecoded(t, ctx, req, decodeRequestPreVoteRequest), nil
}

func (t *Transport) serveTimeoutNow(ctx context.Context, req *conn.Request) ([]byte, error) {
	return serveDecoded(t, ctx, req, decodeTimeoutNowRequest), nil
}

// serveDecoded decodes a request (kept: its byte fields alias it) and runs
// it through raft's consumer.
func serveDecoded[Req any](t *Transport, ctx context.Context, req *conn.Request, dec func([]byte, *Req) error) []byte {
	req.Keep()
	a := new(Req)
	if err := dec(req.Payload, a); err != nil {
		return badRequest(req, err)
	}
	return t.serveRPC(ctx, req, a, nil)
}

// snapshotDoneTimeout bounds the wait for raft's answer to a snapshot
// whose bytes have all arrived (raft restores the FSM before it answers):
// NetworkTransport's rule, Timeout per 256 KiB, at least Timeout.
func (t *Transport) snapshotDoneTimeout(size int64) time.Duration {
	d := t.cfg.Timeout
	if scale := size / hraft.DefaultTimeoutScale; scale > 1 {
		d *= time.Duration(scale)
	}
	return d
}
