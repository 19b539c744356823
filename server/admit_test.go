package server

import (
	"net"
	"testing"
	"time"
)

func testAdmission() *admission {
	return newAdmission(admissionConfig{maxPending: 4, silentPerSource: 2, handshakes: 2, perSourceHS: 1, slotTimeout: time.Second})
}

// pipeConn is one end of a net.Pipe; every pipe has the same remote
// address, so all of them are one source.
func pipeConn(t *testing.T) net.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a
}

// A source's state lives as long as any of its connections is admitted:
// one that has spoken and waits for a slot keeps it, though it is neither
// silent nor in a handshake (a nil source crashed acquire).
func TestAdmissionSourceOutlivesOthersOfIt(t *testing.T) {
	a := testAdmission()
	p1 := a.admit(pipeConn(t))
	if !a.spoke(p1) {
		t.Fatal("p1 evicted")
	}
	p2 := a.admit(pipeConn(t))
	a.finish(p2, false) // the source's last silent connection goes
	if err := a.acquire(p1); err != nil {
		t.Fatal(err)
	}
	a.finish(p1, true)
	if len(a.sources) != 0 || a.total != 0 {
		t.Fatalf("%d sources, %d admitted after all finished", len(a.sources), a.total)
	}
}

// Past MaxSilentPerSource the source's oldest silent connection is closed;
// past MaxPendingConns the oldest silent one anywhere; with none silent
// the new one is refused.
func TestAdmissionEvictsOldestSilent(t *testing.T) {
	a := testAdmission()
	first := a.admit(pipeConn(t))
	second := a.admit(pipeConn(t))
	third := a.admit(pipeConn(t)) // a third silent one from the source: first goes
	if !first.dropped || second.dropped || third.dropped {
		t.Fatalf("dropped: %v %v %v", first.dropped, second.dropped, third.dropped)
	}
	if a.spoke(first) {
		t.Fatal("an evicted connection spoke")
	}
	for _, p := range []*pending{second, third} {
		if !a.spoke(p) {
			t.Fatal("evicted")
		}
	}
	a.admit(pipeConn(t))
	a.admit(pipeConn(t)) // 4 admitted: the bound
	if a.admit(pipeConn(t)) == nil {
		t.Fatal("a silent one should have been evicted to admit this one")
	}
	for a.silent.Len() > 0 {
		a.spoke(a.silent.Front().Value.(*pending))
	}
	if p := a.admit(pipeConn(t)); p != nil {
		t.Fatal("admitted past the bound with no silent connection to evict")
	}
}

// With one silent connection allowed per source, a second from it evicts
// the first without freeing the source's state under the new one.
func TestAdmissionEvictionKeepsSource(t *testing.T) {
	a := newAdmission(admissionConfig{maxPending: 4, silentPerSource: 1, handshakes: 1, perSourceHS: 1, slotTimeout: time.Second})
	first := a.admit(pipeConn(t))
	second := a.admit(pipeConn(t))
	if !first.dropped || second == nil || a.sources[second.src] == nil {
		t.Fatalf("first dropped %v, source of second %v", first.dropped, a.sources[second.src])
	}
	if !a.spoke(second) {
		t.Fatal("second evicted")
	}
	if err := a.acquire(second); err != nil {
		t.Fatal(err)
	}
	a.finish(second, true)
	if len(a.sources) != 0 || a.total != 0 {
		t.Fatalf("%d sources, %d admitted after all finished", len(a.sources), a.total)
	}
}
